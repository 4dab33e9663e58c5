"""``data prepare`` / ``data check`` on small fake archives in each dataset's official layout.

The fakes have the official file names and annotation formats (CUB's images.txt and
bounding_boxes.txt, DTD's images/<class>/, FGVC-Aircraft's images_box.txt and
images_variant_*.txt, Fungi's images/<class>/) with a few tiny JPEGs per class; the counts of
docs/PROTOCOL.md §4 are scaled down through a reduced ``DatasetSpec``. Texture and Aircraft use
their real class names, because their splits are the committed lists.
"""

import dataclasses
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hsmlbench.domains.images import datasets as ds
from hsmlbench.domains.images.datasets import DataError, committed_split, get_spec, split_classes
from hsmlbench.domains.images.layout import (
    check_dataset,
    format_reports,
    load_split,
    parse_split_file,
)
from hsmlbench.domains.images.prepare import prepare_dataset

RED, BLUE = (220, 20, 20), (20, 20, 220)


def jpeg(path: Path, size=(40, 30), box=None, colour=BLUE) -> None:
    """A JPEG of ``colour``; with ``box`` (left, top, right, bottom) painted red."""
    image = Image.new("RGB", size, colour)
    if box is not None:
        image.paste(RED, tuple(int(v) for v in box))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=95)


def tar_gz(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for child in sorted(folder.iterdir()):
            tar.add(child, arcname=child.name)
    return archive


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*")):
            z.write(path, path.relative_to(folder))
    return archive


def fake_cub(base: Path, counts=(3,) * 10 + (2, 2)) -> Path:
    """CUB_200_2011/ with one class per entry of ``counts``; boxes cover the centre of each image."""
    top = base / "CUB_200_2011"
    images, labels, boxes, classes = [], [], [], []
    image_id = 0
    for c, count in enumerate(counts, 1):
        name = f"{c:03d}.Bird_{c}"
        classes.append(f"{c} {name}")
        for i in range(count):
            image_id += 1
            relative = f"{name}/Bird_{c}_{i:04d}.jpg"
            x, y, w, h = 10.0, 8.0, 20.0, 14.0  # x y width height, as CUB's bounding_boxes.txt
            jpeg(top / "images" / relative, (40, 30), (x, y, x + w, y + h))
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {c}")
            boxes.append(f"{image_id} {x} {y} {w} {h}")
    for file, lines in [
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("bounding_boxes.txt", boxes),
        ("classes.txt", classes),
    ]:
        (top / file).write_text("\n".join(lines) + "\n")
    return base


def fake_dtd(base: Path, per_class=2, corrupt: str | None = None) -> Path:
    names = sorted({n for part in committed_split("texture").values() for n in part})
    for name in names:
        for i in range(per_class):
            jpeg(
                base / "dtd" / "images" / name / f"{name}_{i:04d}.jpg",
                (24, 20),
                colour=(i * 90, 50, 50),
            )
    (base / "dtd" / "labels").mkdir(parents=True)
    if corrupt:
        (base / "dtd" / "images" / corrupt / f"{corrupt}_0000.jpg").write_bytes(
            b"not a jpeg at all"
        )
    return base


def fake_aircraft(base: Path, per_class=2) -> Path:
    data = base / "fgvc-aircraft-2013b" / "data"
    variants = [
        line.split("\t")[1]
        for line in (Path(ds.__file__).parent / "splits" / "aircraft.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    # variant names as in the official files: a few with spaces and '/', the rest as their folders
    renamed = {
        "F-A-18": "F/A-18",
        "F-16A-B": "F-16A/B",
        "Boeing-717": "Boeing 717",
        "BAE-146-200": "BAE 146-200",
    }
    official = {f: renamed.get(f, f) for f in variants}
    box_lines, trainval, test = [], [], []
    image_id = 1000000
    for variant in official.values():
        for i in range(per_class):
            image_id += 1
            # xmin ymin xmax ymax, 1-based inclusive: the box is the red area
            jpeg(data / "images" / f"{image_id}.jpg", (50, 40), (10, 5, 40, 30))
            box_lines.append(f"{image_id} 11 6 40 30")
            (trainval if i % 2 == 0 else test).append(f"{image_id} {variant}")
    (data / "images_box.txt").write_text("\n".join(box_lines) + "\n")
    (data / "images_variant_trainval.txt").write_text("\n".join(trainval) + "\n")
    (data / "images_variant_test.txt").write_text("\n".join(test) + "\n")
    (data / "variants.txt").write_text("\n".join(official.values()) + "\n")
    return base


def fake_fungi(base: Path, counts=(4, 5, 4, 6, 4, 4, 5, 4, 4, 4, 3, 2)) -> Path:
    for c, count in enumerate(counts):
        for i in range(count):
            jpeg(
                base / "images" / f"{10000 + c}_Fungus {c}" / f"IMG_{c}_{i}.JPG",
                (30, 30),
                colour=(40, 40 + c, 40),
            )
    return base


def small(name: str, **changes) -> ds.DatasetSpec:
    return dataclasses.replace(get_spec(name), **changes)


BIRD = small("bird", split_sizes=(6, 2, 2), images_per_class=3)
TEXTURE = small("texture", images_per_class=2)
AIRCRAFT = small("aircraft", images_per_class=2)
FUNGI = small("fungi", split_sizes=(6, 2, 2), images_per_class=4)


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def red_fraction(path: Path) -> float:
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return float(((pixels[..., 0] > 150) & (pixels[..., 2] < 100)).mean())


def test_bird_from_archive_selects_exact_count_classes_and_crops_to_the_box(tmp_path):
    archive = tar_gz(fake_cub(tmp_path / "src"), tmp_path / "CUB_200_2011.tgz")
    root = tmp_path / "data"
    out = prepare_dataset("bird", archive, root, spec=BIRD, log=lambda _: None)
    assert out == root / "meta-dataset" / "CUB_Bird"
    split = parse_split_file((out / "splits.txt").read_text(), "splits.txt")
    assert [len(split[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    chosen = {n for part in split.values() for n in part}
    assert chosen == {f"{c:03d}.Bird_{c}" for c in range(1, 11)}  # the two 2-image classes are out
    assert split == split_classes(
        "bird", chosen, (6, 2, 2)
    )  # the documented rule, not listing order
    files = sorted(out.glob("*/*/*.jpg"))
    assert len(files) == 10 * 3
    for file in files[:5]:
        assert Image.open(file).size == (84, 84)
        assert red_fraction(file) > 0.9  # cropped to the (red) bounding box
    assert not list(root.glob("meta-dataset/.*"))  # no staging folder left


def test_texture_uses_the_committed_split_and_reads_the_result_back(tmp_path, monkeypatch):
    archive = tar_gz(fake_dtd(tmp_path / "src"), tmp_path / "dtd-r1.0.1.tar.gz")
    out = prepare_dataset("texture", archive, tmp_path / "data", spec=TEXTURE, log=lambda _: None)
    for part, names in committed_split("texture").items():
        assert sorted(p.name for p in (out / part).iterdir()) == sorted(names)
        assert all(len(list((out / part / n).iterdir())) == 2 for n in names)
    monkeypatch.setitem(ds.DATASETS, "texture", TEXTURE)
    report = check_dataset(tmp_path / "data", "texture")
    assert report.ok, report.problems
    assert "matches hsmlbench's split" in report.notes[0]
    test = load_split(tmp_path / "data", "texture", "test")
    assert test.images.dtype == torch.uint8 and tuple(test.images.shape) == (10 * 2, 3, 84, 84)
    assert test.class_names == sorted(committed_split("texture")["test"])
    assert test.labels.tolist() == [c for c in range(10) for _ in range(2)]


def test_aircraft_from_folder_crops_the_documented_xmin_ymin_xmax_ymax_box(tmp_path):
    src = fake_aircraft(tmp_path / "src")
    out = prepare_dataset("aircraft", src, tmp_path / "data", spec=AIRCRAFT, log=lambda _: None)
    for part, names in committed_split("aircraft").items():
        assert sorted(p.name for p in (out / part).iterdir()) == sorted(names)
    assert len(list(out.glob("*/F-A-18/*.jpg"))) == 2  # 'F/A-18' in the annotations
    file = next(out.glob("train/*/*.jpg"))
    assert Image.open(file).size == (84, 84)
    assert red_fraction(file) > 0.9
    assert (src / "fgvc-aircraft-2013b").exists()  # an extracted source folder is left as it was


def test_fungi_from_zip_keeps_the_required_number_per_class(tmp_path):
    archive = zip_folder(fake_fungi(tmp_path / "src"), tmp_path / "fungi_train_val.zip")
    out = prepare_dataset("fungi", archive, tmp_path / "data", spec=FUNGI, log=lambda _: None)
    class_dirs = [d for part in ("train", "val", "test") for d in (out / part).iterdir()]
    assert len(class_dirs) == 10 and all(len(list(d.iterdir())) == 4 for d in class_dirs)
    again = prepare_dataset("fungi", archive, tmp_path / "data2", spec=FUNGI, log=lambda _: None)
    assert tree(out) == tree(again)  # deterministic: same classes, same images


def test_missing_source_is_an_error_that_creates_nothing(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(DataError, match="no such file or folder"):
        prepare_dataset("bird", tmp_path / "nope.tgz", root, spec=BIRD, log=lambda _: None)
    assert not root.exists()


def test_truncated_archive_is_an_error_that_leaves_nothing_behind(tmp_path):
    archive = tar_gz(fake_cub(tmp_path / "src"), tmp_path / "CUB_200_2011.tgz")
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    root = tmp_path / "data"
    with pytest.raises(DataError, match="cannot read archive .*download it again"):
        prepare_dataset("bird", broken, root, spec=BIRD, log=lambda _: None)
    assert not root.exists()


def test_corrupt_image_is_an_error_that_leaves_existing_data_untouched(tmp_path):
    root = tmp_path / "data"
    (root / "meta-dataset" / "CUB_Bird").mkdir(parents=True)
    (root / "meta-dataset" / "CUB_Bird" / "keep.txt").write_text("user data")
    before = tree(root)
    archive = tar_gz(fake_dtd(tmp_path / "src", corrupt="banded"), tmp_path / "dtd.tar.gz")
    with pytest.raises(DataError, match="cannot decode image .*banded_0000.jpg"):
        prepare_dataset("texture", archive, root, spec=TEXTURE, log=lambda _: None)
    assert tree(root) == before


def test_missing_annotation_file_names_the_file(tmp_path):
    src = fake_cub(tmp_path / "src")
    (src / "CUB_200_2011" / "bounding_boxes.txt").unlink()
    with pytest.raises(DataError, match="bounding_boxes.txt is missing"):
        prepare_dataset("bird", src, tmp_path / "data", spec=BIRD, log=lambda _: None)
    assert not (tmp_path / "data").exists()


def test_wrong_archive_and_existing_target(tmp_path):
    src = fake_fungi(tmp_path / "src")
    with pytest.raises(DataError, match="does not look like CUB-200-2011"):
        prepare_dataset("bird", src, tmp_path / "data", spec=BIRD, log=lambda _: None)
    prepare_dataset("fungi", src, tmp_path / "data", spec=FUNGI, log=lambda _: None)
    with pytest.raises(DataError, match="already exists; pass --force"):
        prepare_dataset("fungi", src, tmp_path / "data", spec=FUNGI, log=lambda _: None)
    prepare_dataset("fungi", src, tmp_path / "data", spec=FUNGI, force=True, log=lambda _: None)
    assert [p.name for p in (tmp_path / "data" / "meta-dataset").iterdir()] == ["FGVCx_Fungi"]


def test_check_reports_missing_datasets_counts_and_the_first_problem(tmp_path):
    root = tmp_path / "data"
    bird = root / "meta-dataset" / "CUB_Bird"
    for part, n_classes in (("train", 64), ("val", 16), ("test", 20)):
        for c in range(n_classes):
            for i in range(2):
                jpeg(bird / part / f"c{c:03d}" / f"{i}.jpg", (84, 84))
    jpeg(bird / "test" / "c000" / "big.jpg", (90, 84))  # a third image, of the wrong size
    reports = [check_dataset(root, name) for name in ("bird", "texture")]
    text = format_reports(root, reports)
    assert not reports[0].ok and reports[0].found
    assert reports[0].splits["train"].classes == 64 and reports[0].splits["train"].images == 128
    assert reports[0].problems[0] == "train/c000: 2 images, expected 60 per class"
    assert any("big.jpg: 90×84 pixels, expected 84×84" in p for p in reports[0].problems)
    assert "Bird (bird): PROBLEM" in text and "classes  64/64" in text and "first problem:" in text
    assert "Texture (texture): MISSING" in text and "data prepare --dataset texture" in text
    assert "0 of 2 datasets ready" in text


def test_data_root_comes_from_argument_or_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(ds.DATA_ROOT_ENV, raising=False)
    with pytest.raises(DataError, match="--data-root PATH or set HSMLBENCH_DATA"):
        ds.resolve_data_root(None)
    monkeypatch.setenv(ds.DATA_ROOT_ENV, str(tmp_path))
    assert ds.resolve_data_root(None) == tmp_path
    assert ds.resolve_data_root(tmp_path / "x") == tmp_path / "x"


def test_committed_splits_are_disjoint_and_complete():
    for name, n_classes in (("texture", 47), ("aircraft", 100)):
        split = committed_split(name)
        names = [n for part in split.values() for n in part]
        assert len(names) == len(set(names)) == n_classes
        assert tuple(len(split[s]) for s in ("train", "val", "test")) == get_spec(name).split_sizes
    assert "F-A-18" in {n for part in committed_split("aircraft").values() for n in part}


def test_a_crafted_index_cannot_read_files_outside_the_archive(tmp_path):
    """images.txt naming ``../../secret.jpg``: refused as unsafe, nothing prepared (it used
    to read that file into the dataset and report success)."""
    secret = tmp_path / "secret_photo.jpg"
    jpeg(secret, (40, 30))
    src = fake_cub(tmp_path / "src")
    index = src / "CUB_200_2011" / "images.txt"
    lines = index.read_text().splitlines()
    first_id, first = lines[0].split()
    lines[0] = f"{first_id} {first.split('/')[0]}/../../../../secret_photo.jpg"
    index.write_text("\n".join(lines) + "\n")
    root = tmp_path / "data"
    with pytest.raises(DataError, match="outside .*refused as unsafe"):
        prepare_dataset("bird", src, root, spec=BIRD, log=lambda _: None)
    assert not (root / "meta-dataset" / "CUB_Bird").exists()


def test_an_unsafe_member_is_called_unsafe_and_extraction_is_bounded(tmp_path, monkeypatch):
    evil = tmp_path / "evil.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        data = b"x" * 10
        info.size = len(data)
        import io

        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match="refused as unsafe") as error:
        prepare_dataset("bird", evil, tmp_path / "data", spec=BIRD, log=lambda _: None)
    assert "damaged" not in str(error.value) and not (tmp_path / "escaped.txt").exists()
    archive = tar_gz(fake_cub(tmp_path / "src"), tmp_path / "CUB_200_2011.tgz")
    monkeypatch.setenv("HSMLBENCH_MAX_EXTRACT_GB", "0.00001")  # 10 kB
    with pytest.raises(DataError, match="over the 1e-05 GB bound; set HSMLBENCH_MAX_EXTRACT_GB"):
        prepare_dataset("bird", archive, tmp_path / "data2", spec=BIRD, log=lambda _: None)


def test_prepare_checks_its_own_output_before_replacing_anything(tmp_path, monkeypatch):
    """What `data check` would refuse is never reported as prepared (here the check is made
    to fail; before, prepare reported success without checking)."""
    from hsmlbench.domains.images import layout

    src = fake_cub(tmp_path / "src")
    root = tmp_path / "data"
    prepare_dataset("bird", src, root, spec=BIRD, log=lambda _: None)
    before = sorted(p.name for p in (root / "meta-dataset" / "CUB_Bird" / "train").iterdir())
    real = layout.check_dataset

    def failing(*args, **kwargs):
        report = real(*args, **kwargs)
        report.problems.append("an image of the wrong size")
        return report

    monkeypatch.setattr(layout, "check_dataset", failing)
    with pytest.raises(DataError, match="fails its own check .*an image of the wrong size"):
        prepare_dataset("bird", src, root, spec=BIRD, force=True, log=lambda _: None)
    after = sorted(p.name for p in (root / "meta-dataset" / "CUB_Bird" / "train").iterdir())
    assert after == before  # the previous dataset is untouched
