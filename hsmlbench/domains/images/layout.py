"""The prepared layout on disk: checking it (``hsmlbench data check``) and loading it.

Layout (docs/PROTOCOL.md §4, the authors' own):
``<root>/meta-dataset/<Folder>/{train,val,test}/<class>/*.jpg``, 84×84 RGB. Both ways in (the
authors' prepared folders, ``hsmlbench data prepare``) end here.
A split is decoded once into a uint8 tensor and kept in memory for the whole process.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hsmlbench.domains.images.datasets import (
    DATASET_NAMES,
    IMAGE_SIZE,
    SPLITS,
    DataError,
    committed_split,
    dataset_dir,
    get_spec,
    how_to_get,
    parse_split_file,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLIT_FILE = "splits.txt"  # written by `data prepare` beside the data


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


@dataclass
class SplitCount:
    classes: int
    expected_classes: int
    images: int
    expected_images: int
    min_per_class: int
    max_per_class: int

    @property
    def ok(self) -> bool:
        return self.classes == self.expected_classes and self.images == self.expected_images


@dataclass
class DatasetReport:
    """What ``data check`` found for one dataset; ``problems[0]`` is the first problem."""

    name: str
    path: Path
    found: bool
    splits: dict[str, SplitCount] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    fix: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.found and not self.problems


def check_dataset(root: Path, name: str, full: bool = False, spec=None) -> DatasetReport:
    """Counts classes and images per split against docs/PROTOCOL.md §4 and opens every image.

    Opening reads each file's header (size, format); ``full`` also decodes every pixel, which
    catches truncated files at the cost of a few minutes on the real data. ``spec``: the
    counts to check against (default: the dataset's; ``prepare`` passes the ones it used).
    """
    spec = spec or get_spec(name)
    path = dataset_dir(root, name)
    report = DatasetReport(name, path, path.is_dir())
    if not report.found:
        report.problems.append(f"not found at {path}")
        report.fix = how_to_get(name, root)
        return report
    classes_found: dict[str, list[str]] = {}
    image_problem = None
    for split in SPLITS:
        folder = path / split
        if not folder.is_dir():
            report.problems.append(f"missing split folder {folder}")
            report.fix = (
                f"re-run `hsmlbench data prepare --dataset {name}` ({how_to_get(name, root)})"
            )
            continue
        counts = []
        names = []
        for class_dir in _class_dirs(folder):
            files = _image_files(class_dir)
            names.append(class_dir.name)
            counts.append(len(files))
            if files and not image_problem:  # report the first bad image only
                image_problem = _check_images(files, full)
                if image_problem:
                    report.problems.append(image_problem)
                    report.fix = report.fix or (
                        f"replace or delete the file, or re-run `hsmlbench data prepare --dataset "
                        f"{name} --source PATH --force` from the official archive"
                    )
        classes_found[split] = names
        count = SplitCount(
            classes=len(names),
            expected_classes=spec.expected_classes(split),
            images=sum(counts),
            expected_images=spec.expected_classes(split) * spec.images_per_class,
            min_per_class=min(counts, default=0),
            max_per_class=max(counts, default=0),
        )
        report.splits[split] = count
        if count.classes != count.expected_classes:
            report.problems.append(
                f"{split}: {count.classes} classes, expected {count.expected_classes}"
            )
            report.fix = report.fix or _recount_fix(name, root)
        elif (
            count.min_per_class != spec.images_per_class
            or count.max_per_class != spec.images_per_class
        ):
            bad = next(n for n, c in zip(names, counts) if c != spec.images_per_class)
            report.problems.append(
                f"{split}/{bad}: {counts[names.index(bad)]} images, expected {spec.images_per_class} per class"
            )
            report.fix = report.fix or _recount_fix(name, root)
    if len(classes_found) == len(SPLITS):
        report.notes += _compare_with_reference_split(name, path, classes_found)
    return report


def _recount_fix(name: str, root) -> str:
    return (
        f"the folder is incomplete or not the docs/PROTOCOL.md §4 selection: re-run "
        f"`hsmlbench data prepare --dataset {name} --source PATH --data-root {root} --force`"
    )


def _check_images(files: list[Path], full: bool) -> str | None:
    for file in files:
        try:
            with Image.open(file) as image:
                if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                    return f"{file}: {image.size[0]}×{image.size[1]} pixels, expected {IMAGE_SIZE}×{IMAGE_SIZE}"
                if full:
                    image.load()
        except (OSError, SyntaxError) as error:  # PIL raises SyntaxError for some broken headers
            return f"{file}: unreadable image ({error})"
    return None


def reference_split(name: str, path: Path | None = None) -> dict[str, list[str]] | None:
    """hsmlbench's split of a dataset: the committed list, or the one written at prepare time."""
    spec = get_spec(name)
    if spec.committed_split:
        return committed_split(name)
    if path is not None and (path / SPLIT_FILE).exists():
        return parse_split_file((path / SPLIT_FILE).read_text(), str(path / SPLIT_FILE))
    return None


def _compare_with_reference_split(name: str, path: Path, found: dict[str, list[str]]) -> list[str]:
    reference = reference_split(name, path)
    if reference is None:
        return ["no splits.txt: a layout prepared elsewhere (e.g. the authors'), used as is"]
    differing = sum(len(set(found[s]) ^ set(reference[s])) for s in SPLITS)
    if differing == 0:
        return ["class split matches hsmlbench's split"]
    return [
        f"class split differs from hsmlbench's ({differing} class placements differ): used as is, "
        "but results are then not comparable with runs on hsmlbench's split"
    ]


def check_data_root(root: Path, names=DATASET_NAMES, full: bool = False) -> list[DatasetReport]:
    return [check_dataset(root, name, full) for name in names]


def format_reports(root: Path, reports: list[DatasetReport]) -> str:
    """The text ``hsmlbench data check`` prints."""
    lines = [f"data root: {root}"]
    for r in reports:
        spec = get_spec(r.name)
        status = "OK" if r.ok else ("MISSING" if not r.found else "PROBLEM")
        lines.append(f"\n{spec.label} ({r.name}): {status} — {r.path}")
        for split, c in r.splits.items():
            per_class = (
                f"{c.min_per_class}"
                if c.min_per_class == c.max_per_class
                else f"{c.min_per_class}-{c.max_per_class}"
            )
            lines.append(
                f"  {split:5s} classes {c.classes:3d}/{c.expected_classes:<3d} images "
                f"{c.images:6d}/{c.expected_images:<6d} ({per_class} per class)"
                + ("" if c.ok else "  <-- differs")
            )
        if r.problems:
            lines.append(f"  first problem: {r.problems[0]}")
            if len(r.problems) > 1:
                lines.append(f"  ({len(r.problems) - 1} more problems after fixing this one)")
            lines.append(f"  fix: {r.fix}")
        for note in r.notes:
            lines.append(f"  note: {note}")
    ok = sum(r.ok for r in reports)
    lines.append(f"\n{ok} of {len(reports)} datasets ready")
    return "\n".join(lines) + "\n"


@dataclass
class ImageSplit:
    """One split of one dataset, decoded: images grouped by class, class c at
    ``images[starts[c] : starts[c] + counts[c]]``."""

    dataset: str
    split: str
    images: torch.Tensor  # uint8 [N, 3, S, S]
    labels: torch.Tensor  # int64 [N], class index within the split
    class_names: list[str]
    starts: torch.Tensor  # int64 [C]
    counts: torch.Tensor  # int64 [C]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def split_from_class_arrays(
    dataset: str, split: str, per_class: list[torch.Tensor], names: list[str]
) -> ImageSplit:
    """Builds an ImageSplit from one uint8 tensor [n_c, 3, S, S] per class."""
    counts = torch.tensor([len(t) for t in per_class], dtype=torch.int64)
    starts = torch.cumsum(counts, 0) - counts
    labels = torch.repeat_interleave(torch.arange(len(per_class)), counts)
    return ImageSplit(dataset, split, torch.cat(per_class), labels, list(names), starts, counts)


_CACHE: dict[tuple, ImageSplit] = {}


def load_split(
    root: Path, name: str, split: str, image_size: int = IMAGE_SIZE, workers: int = 8
) -> ImageSplit:
    """Decodes every image of ``<dataset>/<split>`` once per process (cached in memory).

    Files must be 84×84 (docs/PROTOCOL.md §4); ``image_size`` below 84 resizes after decoding (for
    reduced-size runs, never the paper's protocol).
    """
    folder = dataset_dir(root, name) / split
    key = (str(folder.resolve()), image_size)
    if key in _CACHE:
        return _CACHE[key]
    if not folder.is_dir():
        raise DataError(f"{get_spec(name).label}: no folder {folder}; {how_to_get(name, root)}")
    class_dirs = _class_dirs(folder)
    files = [_image_files(d) for d in class_dirs]
    if not class_dirs or any(not f for f in files):
        raise DataError(f"{folder}: empty split or empty class folder; run `hsmlbench data check`")
    flat = [f for class_files in files for f in class_files]
    with ThreadPoolExecutor(workers) as pool:
        arrays = list(pool.map(lambda p: _decode(p, image_size), flat))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    per_class = list(images.split([len(f) for f in files]))
    result = split_from_class_arrays(name, split, per_class, [d.name for d in class_dirs])
    _CACHE[key] = result
    return result


def _decode(path: Path, image_size: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise DataError(
                    f"{path}: {image.size[0]}×{image.size[1]} pixels, expected "
                    f"{IMAGE_SIZE}×{IMAGE_SIZE}; run `hsmlbench data check`"
                )
            image = image.convert("RGB")
            if image_size != IMAGE_SIZE:
                image = image.resize((image_size, image_size), Image.LANCZOS)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError) as error:
        raise DataError(f"{path}: unreadable image ({error}); run `hsmlbench data check`") from None
