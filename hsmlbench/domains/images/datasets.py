"""The four image datasets of T3/T4: what each holds, how its classes split, where it lives.

docs/PROTOCOL.md §4 "Data". Class splits are deterministic and versioned: for Texture (DTD) and
Aircraft (FGVC-Aircraft) every class name is known in advance, so their splits are committed
as ``splits/<dataset>.txt``. Bird (CUB) and Fungi select their 100 classes by image count,
which needs the archive; their split is computed at prepare time by the same rule
(``hash_order``: classes ordered by a SHA-256 of their names, never by directory-listing
order) and written beside the prepared data as ``splits.txt``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SPLITS = ("train", "val", "test")
DATA_ROOT_ENV = "HSMLBENCH_DATA"
LAYOUT_DIR = "meta-dataset"  # the authors' layout: <root>/meta-dataset/<Folder>/<split>/<class>
IMAGE_SIZE = 84  # docs/PROTOCOL.md §4: every image is resized to 84×84 RGB


class DataError(Exception):
    """A problem with the data on disk or a source archive; the message says how to fix it."""


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of docs/PROTOCOL.md §4's table."""

    name: str  # CLI name: bird, texture, aircraft, fungi
    label: str  # column label of T3/T4
    folder: str  # folder under <root>/meta-dataset (the authors' names)
    source: str  # official archive
    url: str  # where to get it (never downloaded by hsmlbench)
    split_sizes: tuple[int, int, int]  # classes in train / val / test
    images_per_class: int  # after selection
    selection: str  # "all", "exactly" (CUB: exactly N images), "at_least" (Fungi: ≥ N, keep N)
    crop_to_box: bool  # crop to the bounding box before resizing
    committed_split: bool  # True: splits/<name>.txt is in the package

    @property
    def n_classes(self) -> int:
        return sum(self.split_sizes)

    def expected_classes(self, split: str) -> int:
        return self.split_sizes[SPLITS.index(split)]


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "bird",
            "Bird",
            "CUB_Bird",
            "CUB-200-2011 (CUB_200_2011.tgz)",
            "https://www.vision.caltech.edu/datasets/cub_200_2011/",
            (64, 16, 20),
            60,
            "exactly",
            True,
            False,
        ),
        DatasetSpec(
            "texture",
            "Texture",
            "DTD_Texture",
            "DTD r1.0.1 (dtd-r1.0.1.tar.gz)",
            "https://www.robots.ox.ac.uk/~vgg/data/dtd/",
            (30, 7, 10),
            120,
            "all",
            False,
            True,
        ),
        DatasetSpec(
            "aircraft",
            "Aircraft",
            "FGVC_Aircraft",
            "FGVC-Aircraft 2013b (fgvc-aircraft-2013b.tar.gz)",
            "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/",
            (64, 16, 20),
            100,
            "all",
            True,
            True,
        ),
        DatasetSpec(
            "fungi",
            "Fungi",
            "FGVCx_Fungi",
            "FGVCx Fungi 2018 (fungi_train_val.tgz)",
            "https://github.com/visipedia/fgvcx_fungi_comp",
            (64, 16, 20),
            150,
            "at_least",
            False,
            False,
        ),
    )
}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)  # the order of T3/T4's columns and of HSML's code

# The synthetic stand-ins (hsmlbench.domains.images.synthetic), slot by slot: domain i copies the
# split sizes of DATASET_NAMES[i] and takes its place in T4's stream.
SYNTHETIC_DOMAINS: tuple[str, ...] = ("shapes", "gratings", "dots", "clouds")
SYNTHETIC_LABELS = {d: f"{d.capitalize()} (synthetic)" for d in SYNTHETIC_DOMAINS}


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def aircraft_folder_name(variant: str) -> str:
    """FGVC-Aircraft variant → class folder, as the authors named them ('F/A-18' → 'F-A-18')."""
    return "-".join(variant.split()).replace("/", "-")


def hash_order(dataset: str, names) -> list[str]:
    """Names in a fixed pseudo-random order that depends only on the names themselves."""
    return sorted(
        names, key=lambda n: (hashlib.sha256(f"hsmlbench:{dataset}:{n}".encode()).hexdigest(), n)
    )


def split_classes(dataset: str, names, sizes: tuple[int, int, int]) -> dict[str, list[str]]:
    """The deterministic split rule: hash-order the names, take sizes[0] / [1] / [2] in turn.

    Raises DataError when fewer names than ``sum(sizes)`` are given.
    """
    ordered = hash_order(dataset, sorted(set(names)))
    need = sum(sizes)
    if len(ordered) < need:
        raise DataError(
            f"{dataset}: found {len(ordered)} eligible classes, need {need}; "
            "is the source the complete official archive?"
        )
    chosen = ordered[:need]
    a, b = sizes[0], sizes[0] + sizes[1]
    return {"train": sorted(chosen[:a]), "val": sorted(chosen[a:b]), "test": sorted(chosen[b:])}


def format_split_file(dataset: str, split: dict[str, list[str]], header: str) -> str:
    """``split<TAB>class folder`` lines, with ``#`` comment lines on top."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines.append(f"# dataset: {dataset}; one line per class: <split>\\t<class folder>")
    for part in SPLITS:
        lines += [f"{part}\t{name}" for name in split.get(part, [])]
    return "\n".join(lines) + "\n"


def parse_split_file(text: str, origin: str) -> dict[str, list[str]]:
    split: dict[str, list[str]] = {part: [] for part in SPLITS}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        part, _, name = line.partition("\t")
        if part not in split or not name:
            raise DataError(
                f"{origin}:{number}: expected '<train|val|test><TAB><class>', got {line!r}"
            )
        split[part].append(name)
    return split


def committed_split(name: str) -> dict[str, list[str]]:
    """The class split shipped with hsmlbench (Texture, Aircraft)."""
    spec = get_spec(name)
    if not spec.committed_split:
        raise DataError(
            f"{name}: its split depends on per-class image counts and is written at prepare time "
            f"to <root>/{LAYOUT_DIR}/{spec.folder}/splits.txt"
        )
    text = resources.files("hsmlbench.domains.images").joinpath("splits", f"{name}.txt").read_text()
    return parse_split_file(text, f"splits/{name}.txt")


def resolve_data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root: ``--data-root`` if given, else ``$HSMLBENCH_DATA``; never guessed."""
    value = explicit if explicit is not None else os.environ.get(DATA_ROOT_ENV)
    if value is None or str(value).strip() == "":
        raise DataError(
            f"no data root: pass --data-root PATH or set {DATA_ROOT_ENV}=PATH "
            f"(the folder that holds {LAYOUT_DIR}/)"
        )
    return Path(value).expanduser()


def dataset_dir(root: Path, name: str) -> Path:
    """``<root>/meta-dataset/<Folder>``; a root that is itself the meta-dataset folder works too."""
    root = Path(root)
    folder = get_spec(name).folder
    if root.name == LAYOUT_DIR or (not (root / LAYOUT_DIR).exists() and (root / folder).exists()):
        return root / folder
    return root / LAYOUT_DIR / folder


def how_to_get(name: str, root: Path | str = "$HSMLBENCH_DATA") -> str:
    """One sentence: where to get a dataset and the command that prepares it."""
    spec = get_spec(name)
    return (
        f"get {spec.source} from {spec.url}, then run `hsmlbench data prepare --dataset {name} "
        f"--source PATH --data-root {root}` (or put the authors' prepared "
        f"{LAYOUT_DIR}/{spec.folder} there)"
    )
