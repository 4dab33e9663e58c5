"""``hsmlbench data prepare``: the official archives → the prepared 84×84 layout
(docs/PROTOCOL.md §4).

Per dataset: find its files in the archive (or an extracted folder), select the classes of
docs/PROTOCOL.md §4, split them (``datasets.split_classes`` or the committed lists), crop to the
bounding box where the dataset has one, resize to 84×84 with Lanczos, save as JPEG.

Nothing is ever downloaded. Everything is written inside a hidden staging folder next to the
target and renamed into place at the end, so a failure (a corrupt archive, an unreadable image,
a missing annotation file) leaves nothing behind: no partial dataset, no extracted files.

Where hsmlbench deliberately differs from the authors' scripts (huaxiuyao/HSML, data/*/proc_images.py):
- classes are chosen by a SHA-256 order of their names, not by ``random.sample`` over
  ``os.listdir`` order (which differs between machines), and Fungi keeps 150 images per class
  by the same rule;
- FGVC-Aircraft's ``images_box.txt`` holds ``xmin ymin xmax ymax`` (1-based, inclusive, per the
  dataset's README); the authors' script read those four numbers as ``x y width height``.
  hsmlbench crops to the documented box.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from PIL import Image

from hsmlbench.domains.images.datasets import (
    IMAGE_SIZE,
    LAYOUT_DIR,
    SPLITS,
    DataError,
    DatasetSpec,
    aircraft_folder_name,
    committed_split,
    format_split_file,
    get_spec,
    hash_order,
    split_classes,
)
from hsmlbench.domains.images.layout import IMAGE_SUFFIXES, SPLIT_FILE

JPEG_QUALITY = 95
Box = tuple[float, float, float, float]  # left, top, right, bottom in PIL pixel coordinates
Item = tuple[Path, Box | None]  # source image, crop box


def prepare_dataset(
    name: str,
    source: str | os.PathLike,
    root: str | os.PathLike,
    *,
    force: bool = False,
    spec: DatasetSpec | None = None,
    log: Callable[[str], None] = print,
    workers: int | None = None,
) -> Path:
    """Prepares one dataset into ``<root>/meta-dataset/<Folder>`` and returns that folder.

    ``spec`` overrides the dataset's counts (tests use small fake archives); the committed
    class lists still apply to Texture and Aircraft. Raises DataError, leaving nothing behind.
    """
    spec = spec or get_spec(name)
    source = Path(source).expanduser()
    if not source.exists():
        raise DataError(f"--source {source}: no such file or folder; {spec.source} expected")
    root = Path(root).expanduser()
    parent = root if root.name == LAYOUT_DIR else root / LAYOUT_DIR
    target = parent / spec.folder
    if target.exists() and not force:
        raise DataError(f"{target} already exists; pass --force to replace it")
    resolved_source, resolved_target = source.resolve(), target.resolve()
    if resolved_source == resolved_target or resolved_target in resolved_source.parents:
        raise DataError(
            f"--source {source} is inside {target}, which prepare replaces; move the source "
            "out of the data root first"
        )
    if target.exists() and not (target / "prepared.json").exists():
        raise DataError(
            f"{target} exists but is not a dataset hsmlbench prepared (no prepared.json), so "
            "--force will not replace it; move it away first"
        )
    created: list[Path] = []
    try:
        created = _make_dirs(parent)
        staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{spec.folder}.prepare-"))
    except OSError as error:
        for folder in reversed(created):
            _remove_if_empty(folder)
        raise DataError(
            f"data root {root}: cannot write in {parent} ({error.strerror}); pass --data-root "
            "a folder you can write to"
        ) from None
    base = staging / "source"
    try:
        base = _unpack(source, base, log)
        classes = _COLLECT[name](base, spec)
        split = _select_and_split(name, spec, classes)
        out = staging / "out"
        _write_images(out, split, classes, spec, log, workers)
        header = (
            f"{spec.label} prepared by hsmlbench from {source.name}; "
            "docs/PROTOCOL.md §4 selection\n"
            f"{spec.split_sizes[0]} / {spec.split_sizes[1]} / {spec.split_sizes[2]} classes, "
            f"{spec.images_per_class} images each"
        )
        (out / SPLIT_FILE).write_text(format_split_file(name, split, header))
        (out / "prepared.json").write_text(
            json.dumps({"dataset": name, "source": str(source), "spec": asdict(spec)}, indent=1)
            + "\n"
        )
        out = _checked(out, staging, name, spec)
        if target.exists():
            os.replace(target, staging / "previous")
            try:
                os.replace(out, target)
            except OSError:
                os.replace(staging / "previous", target)  # put the old data back
                raise
        else:
            os.replace(out, target)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(created):
            _remove_if_empty(folder)
        if isinstance(error, DataError):
            raise DataError(_named_by_source(str(error), base, source)) from None
        raise
    shutil.rmtree(staging, ignore_errors=True)
    log(f"prepared {spec.label} at {target}")
    return target


def _named_by_source(message: str, extracted: Path, source: Path) -> str:
    """A problem found in the source, told by the source's own path: an archive's staging
    folder is deleted by then (``x.tgz/dir/file`` names a file inside the archive)."""
    message = message.replace(str(extracted), str(source))
    return message if str(source) in message else f"{source}: {message}"


def _make_dirs(folder: Path) -> list[Path]:
    """mkdir -p that returns the folders it created (to remove them again on failure)."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        path.mkdir()
    return list(reversed(missing))


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _unpack(source: Path, into: Path, log) -> Path:
    """An extracted folder as is; an archive (.tar, .tar.gz, .tgz, .zip) extracted into ``into``."""
    if source.is_dir():
        return source
    log(f"extracting {source.name} (into a staging folder, removed afterwards)")
    into.mkdir()
    try:
        if zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as archive:
                for member in archive.namelist():
                    if Path(member).is_absolute() or ".." in Path(member).parts:
                        raise DataError(
                            f"{source}: member {member!r} would be written outside its folder: "
                            "refused as unsafe (this is not the official archive)"
                        )
                _check_size(source, sum(i.file_size for i in archive.infolist()))
                archive.extractall(into)
        else:
            with tarfile.open(source) as archive:
                _check_size(source, sum(m.size for m in archive.getmembers()))
                archive.extractall(into, filter="data")
    except DataError:
        raise
    except tarfile.FilterError as error:  # a member escaping the folder, a link out of it
        raise DataError(
            f"{source}: {error}: refused as unsafe (this is not the official archive)"
        ) from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as error:
        raise DataError(
            f"cannot read archive {source} ({type(error).__name__}: {error}); the download is "
            "probably incomplete or damaged: download it again"
        ) from None
    return into


def _checked(out: Path, staging: Path, name: str, spec: DatasetSpec) -> Path:
    """The prepared folder, after the same check as ``hsmlbench data check`` passed on it
    (before it replaces anything); a failure is a DataError naming the first problem."""
    from hsmlbench.domains.images.layout import check_dataset

    check_root = staging / "check"
    (check_root / LAYOUT_DIR).mkdir(parents=True)
    checked = check_root / LAYOUT_DIR / spec.folder
    os.replace(out, checked)
    report = check_dataset(check_root, name, spec=spec)
    if not report.ok:
        raise DataError(
            f"the prepared {spec.label} fails its own check ({report.problems[0]}); nothing "
            "was replaced"
        )
    return checked


MAX_EXTRACT_ENV = "HSMLBENCH_MAX_EXTRACT_GB"
MAX_EXTRACT_GB = 40.0  # the largest official archive (Fungi) expands to about 13 GB


def _check_size(source: Path, total_bytes: int) -> None:
    """Extraction is bounded: an archive declaring more than ``HSMLBENCH_MAX_EXTRACT_GB``
    (default 40) is refused before anything is written."""
    limit = float(os.environ.get(MAX_EXTRACT_ENV, MAX_EXTRACT_GB))
    if total_bytes > limit * 1e9:
        raise DataError(
            f"{source} expands to {total_bytes / 1e9:.1f} GB, over the {limit:g} GB bound; "
            f"set {MAX_EXTRACT_ENV} higher if this is really the dataset"
        )


def _inside(folder: Path, relative: str, index: Path) -> Path:
    """``folder / relative`` for a path read from an archive's own index file, refused when
    it leads outside ``folder`` (a crafted index reading files of this machine)."""
    path = folder / relative
    if folder.resolve() not in path.resolve().parents:
        raise DataError(
            f"{index} names {relative!r}, outside {folder}: refused as unsafe (this is not "
            "the official archive)"
        )
    return path


def _find_dir(base: Path, has: Callable[[Path], bool], what: str, spec: DatasetSpec) -> Path:
    """The shallowest folder under ``base`` (depth ≤ 4) for which ``has`` holds."""
    frontier = [base]
    for _ in range(5):
        for folder in frontier:
            if has(folder):
                return folder
        frontier = [c for f in frontier for c in sorted(f.iterdir()) if c.is_dir()]
    raise DataError(f"{base} does not look like {spec.source}: {what} not found")


def _read_lines(path: Path, spec: DatasetSpec) -> list[list[str]]:
    if not path.is_file():
        raise DataError(f"{path} is missing: is the source the complete {spec.source}?")
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


# --- per-dataset collection: class folder name → [(image, crop box)] -----------------------


def _collect_bird(base: Path, spec: DatasetSpec) -> dict[str, list[Item]]:
    """CUB-200-2011: images.txt, bounding_boxes.txt (x y width height), images/<class>/."""
    top = _find_dir(base, lambda d: (d / "images.txt").is_file(), "images.txt", spec)
    images = {row[0]: row[1] for row in _read_lines(top / "images.txt", spec)}
    boxes = {
        row[0]: tuple(float(v) for v in row[1:5])
        for row in _read_lines(top / "bounding_boxes.txt", spec)
    }
    classes: dict[str, list[Item]] = {}
    for image_id, relative in images.items():
        if image_id not in boxes:
            raise DataError(
                f"{top / 'bounding_boxes.txt'}: no box for image {image_id} ({relative})"
            )
        x, y, w, h = boxes[image_id]
        image = _inside(top / "images", relative, top / "images.txt")
        classes.setdefault(Path(relative).parts[0], []).append((image, (x, y, x + w, y + h)))
    return classes


def _collect_texture(base: Path, spec: DatasetSpec) -> dict[str, list[Item]]:
    """DTD: images/<class>/*.jpg (no boxes)."""
    images = _find_dir(
        base, lambda d: d.name == "images" and (d / "banded").is_dir(), "images/banded/", spec
    )
    return {
        d.name: [(p, None) for p in _images_in(d)]
        for d in sorted(images.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }


def _collect_aircraft(base: Path, spec: DatasetSpec) -> dict[str, list[Item]]:
    """FGVC-Aircraft 2013b: data/images/<id>.jpg, images_box.txt, images_variant_*.txt."""
    data = _find_dir(base, lambda d: (d / "images_box.txt").is_file(), "data/images_box.txt", spec)
    # xmin ymin xmax ymax, 1-based inclusive (the dataset's README) → PIL's half-open box
    boxes = {
        row[0]: (float(row[1]) - 1, float(row[2]) - 1, float(row[3]), float(row[4]))
        for row in _read_lines(data / "images_box.txt", spec)
    }
    variant_files = sorted(data.glob("images_variant_*.txt"))
    if not variant_files:
        raise DataError(f"{data}: no images_variant_*.txt; is the source {spec.source}?")
    labels: dict[str, str] = {}
    for file in variant_files:
        for row in _read_lines(file, spec):
            labels.setdefault(row[0], " ".join(row[1:]))
    classes: dict[str, list[Item]] = {}
    for image_id, variant in sorted(labels.items()):
        if image_id not in boxes:
            raise DataError(f"{data / 'images_box.txt'}: no box for image {image_id}")
        image = _inside(data / "images", f"{image_id}.jpg", data / "images_box.txt")
        classes.setdefault(aircraft_folder_name(variant), []).append((image, boxes[image_id]))
    return classes


def _collect_fungi(base: Path, spec: DatasetSpec) -> dict[str, list[Item]]:
    """FGVCx Fungi 2018: images/<class>/*.JPG (no boxes)."""
    images = _find_dir(
        base,
        lambda d: d.name == "images" and any(c.is_dir() for c in d.iterdir()),
        "images/<class>/",
        spec,
    )
    return {
        d.name: [(p, None) for p in _images_in(d)]
        for d in sorted(images.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }


_COLLECT = {
    "bird": _collect_bird,
    "texture": _collect_texture,
    "aircraft": _collect_aircraft,
    "fungi": _collect_fungi,
}


def _select_and_split(
    name: str, spec: DatasetSpec, classes: dict[str, list[Item]]
) -> dict[str, list[str]]:
    """docs/PROTOCOL.md §4's class selection and the split; trims ``classes`` to the kept images."""
    n = spec.images_per_class
    if spec.committed_split:
        split = committed_split(name)
        for part in SPLITS:
            for cls in split[part]:
                if cls not in classes:
                    raise DataError(
                        f"{spec.label}: class {cls!r} not in the source; is it {spec.source}?"
                    )
                if len(classes[cls]) != n:
                    raise DataError(
                        f"{spec.label}: class {cls!r} has {len(classes[cls])} images, expected {n}; "
                        f"is the source the complete {spec.source}?"
                    )
        return split
    if spec.selection == "exactly":
        eligible = [c for c, items in classes.items() if len(items) == n]
    elif spec.selection == "at_least":
        eligible = [c for c, items in classes.items() if len(items) >= n]
        for c in eligible:
            keep = set(hash_order(f"{name}/{c}", [p.name for p, _ in classes[c]])[:n])
            classes[c] = [item for item in classes[c] if item[0].name in keep]
    else:
        eligible = list(classes)
    return split_classes(name, eligible, spec.split_sizes)


def _write_images(out: Path, split, classes, spec: DatasetSpec, log, workers) -> None:
    jobs = []
    for part in SPLITS:
        for cls in split[part]:
            folder = out / part / cls
            folder.mkdir(parents=True)
            jobs += [(src, box, folder / (src.stem + ".jpg")) for src, box in classes[cls]]
    log(f"{spec.label}: writing {len(jobs)} images at {IMAGE_SIZE}×{IMAGE_SIZE}")
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        for done, _ in enumerate(pool.map(lambda job: _convert(*job), jobs), 1):
            if done % 2000 == 0:
                log(f"  {done}/{len(jobs)}")


def _convert(src: Path, box: Box | None, dst: Path) -> None:
    try:
        with Image.open(src) as image:
            image = image.convert("RGB")
            if box is not None:
                image = image.crop(_clamp(box, image.size))
            image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
            image.save(dst, "JPEG", quality=JPEG_QUALITY)
    except FileNotFoundError:
        raise DataError(f"{src} is listed in the annotations but missing from the source") from None
    except (OSError, SyntaxError) as error:
        raise DataError(
            f"cannot decode image {src} ({error}); the archive is damaged: download it again"
        ) from None


def _clamp(box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    width, height = size
    left, top, right, bottom = (int(round(v)) for v in box)
    left, top = max(0, min(left, width - 1)), max(0, min(top, height - 1))
    right, bottom = max(left + 1, min(right, width)), max(top + 1, min(bottom, height))
    return left, top, right, bottom
