"""Readers on real MNIST digits: folder, CSV, NPZ (and BreastMNIST), the report, read_data."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import shared_file
from PIL import Image
from skimage import data as skdata
from test_data_helpers import digit_folder, mixed_digits, mnist

from tlstudio.core.data import (
    DatasetReader, ImageTable, Item, Scan, ValidationReport, builtin_readers, check_trainable, make_split, read_data,
)
from tlstudio.core.data.readers import tlstudio_dataset_readers
from tlstudio.core.errors import DataError


def reasons(table) -> dict[str, str]:
    return {os.path.basename(s.ref): s.reason for s in table.report.skipped}


@pytest.fixture
def messy(tmp_path):
    """Real digits in class folders, plus every kind of bad file a real folder holds."""
    root = digit_folder(tmp_path / "messy", classes=(0, 1, 7), per_class=12)
    photo = root / "7" / "photo.jpg"
    Image.fromarray(skdata.coffee()).save(photo)
    (root / "7" / "cut.jpg").write_bytes(photo.read_bytes()[:3000])
    (root / "1" / "zero.png").write_bytes(b"")
    (root / "1" / "readme.png").write_text("scanned on 2021-03-04\n")
    (root / "1" / "notes.txt").write_text("ignored silently")
    (root / "1" / ".DS_Store").write_bytes(b"\0\1")
    cmyk = root / "0" / "deep" / "cmyk.jpg"
    cmyk.parent.mkdir()
    Image.fromarray(skdata.chelsea()).convert("CMYK").save(cmyk)
    Image.fromarray((mnist()[0][5].astype(np.uint16) * 200)).save(root / "0" / "deep" / "d16.png")
    (root / "empty").mkdir()
    (root / "empty" / "list.csv").write_text("a,b\n")
    return root


def test_folder_skips_bad_files_with_reasons_and_keeps_the_rest(messy):
    table = read_data(messy)
    assert table.reader_id == "folder" and table.class_names == ["0", "1", "7"]
    assert reasons(table) == {
        "cut.jpg": "truncated or damaged image file",
        "zero.png": "empty file (0 bytes)",
        "readme.png": "not an image file (it looks like text)",
    }
    rep = table.report
    assert rep.counts == {"0": 14, "1": 12, "7": 13}
    assert rep.sizes["modes"]["CMYK"] == 1 and rep.sizes["modes"]["L"] == 36 and rep.sizes["modes"]["RGB"] == 1
    assert any(m.startswith("I;16") for m in rep.sizes["modes"])
    assert rep.sizes["max_width"] == 600 and rep.sizes["min_height"] == 28
    assert "class folder 'empty' has no images: skipped" in rep.warnings
    assert not any(it.ref.endswith((".txt", ".DS_Store")) for it in table.items)
    for i in range(len(table)):  # every item kept is usable
        img = table.load_image(i)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    text = rep.summary()
    assert "39 usable images in 3 classes" in text and "cut.jpg: truncated or damaged image file" in text
    assert "Warning: class folder 'empty' has no images: skipped" in text
    check_trainable(table)


def test_report_round_trips_through_json_and_lists_at_most_20_skipped(messy):
    for k in range(25):
        (messy / "1" / f"bad{k:02d}.png").write_bytes(b"")
    rep = read_data(messy).report
    rep.split_counts = {"train": {"0": 10}}
    back = ValidationReport.from_dict(json.loads(json.dumps(rep.to_dict())))
    assert back == rep
    assert "... and 8 more" in rep.summary()


def test_duplicates_are_found_and_conflicting_labels_warned(tmp_path):
    root = digit_folder(tmp_path / "d", classes=(0, 1), per_class=5)
    first = sorted((root / "0").iterdir())[0]
    shutil.copy(first, root / "0" / "copy.png")
    shutil.copy(first, root / "1" / "mislabelled.png")
    rep = read_data(root).report
    assert rep.duplicates == [[str(first), str(root / "0" / "copy.png"), str(root / "1" / "mislabelled.png")]]
    assert any("identical images carry different labels" in w and "mislabelled.png (1)" in w for w in rep.warnings)


def test_one_class_and_tiny_classes_are_refused_by_name(tmp_path):
    one = digit_folder(tmp_path / "one", classes=(3,), per_class=4)
    table = read_data(one)
    assert "only one class ('3'): at least two are needed to train" in table.report.warnings
    with pytest.raises(DataError, match=r"only one class \('3'\) found in .*one: at least two are needed"):
        check_trainable(table)
    tiny = digit_folder(tmp_path / "tiny", classes=(3, 4), per_class=4)
    shutil.rmtree(tiny / "4")
    digit_folder(tiny, classes=(4,), per_class=1)
    with pytest.raises(DataError, match="'4' \\(1\\) .* has fewer than two images"):
        check_trainable(read_data(tiny))
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no usable images found in .*none"):
        check_trainable(read_data(tmp_path / "none"))


def test_fingerprint_is_stable_and_follows_the_data(tmp_path):
    root = digit_folder(tmp_path / "d", classes=(0, 1), per_class=5)
    fp = read_data(root).fingerprint()
    assert read_data(root).fingerprint() == fp
    f = sorted((root / "1").iterdir())[0]
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert read_data(root).fingerprint() != fp


def test_folder_without_class_folders_is_unlabelled(tmp_path):
    X, _ = mnist()
    for i in range(3):
        Image.fromarray(X[i]).save(tmp_path / f"{i}.png")
    table = read_data(tmp_path)
    assert len(table) == 3 and table.labels().tolist() == [-1, -1, -1] and table.report.unlabelled == 3
    with pytest.raises(DataError, match="carry no labels"):
        check_trainable(table)


# --- CSV -----------------------------------------------------------------------------------------
def test_csv_reports_missing_files_and_unknown_labels_with_line_numbers(tmp_path):
    root = digit_folder(tmp_path / "img", classes=(0, 1, 2), per_class=6)
    files = sorted(root.rglob("*.png"))
    lines = ["Filename;Diagnosis;Set"]  # semicolons, other header names, Excel's BOM
    for f in files:
        c = f.parent.name
        split = "test" if c == "2" else ("Validation" if f.stem.endswith(("1", "3")) else "training")
        lines.append(f"{f.relative_to(tmp_path)};{c};{split}")
    shutil.copy(files[0], root / "extra.png")
    lines += ["img/missing.png;0;train", "img/extra.png;5;train", "img/extra.png;;train",
              f"{files[1].relative_to(tmp_path)};0;train"]
    csv = tmp_path / "labels.csv"
    csv.write_bytes(("\ufeff" + "\n".join(lines) + "\n").encode("utf-8"))
    table = read_data(csv, options={"classes": ["0", "1", "2"]})
    assert table.reader_id == "csv" and table.has_given_split
    got = {s.reason for s in table.report.skipped}
    n = len(files) + 1
    assert f"labels.csv:{n + 1}: file not found: img/missing.png" in got
    assert f"labels.csv:{n + 2}: unknown label '5' (known: 0, 1, 2)" in got
    assert f"labels.csv:{n + 3}: empty label" in got
    assert f"labels.csv:{n + 4}: listed again (first on line 3)" in got
    never = [s for s in table.report.skipped if "never occurs in the training split" in s.reason]
    assert len(never) == 6 and all("label '2'" in s.reason for s in never)
    assert table.class_names == ["0", "1"] and sum(table.report.counts.values()) == 12
    assert {it.split for it in table.items} == {"train", "val"}
    assert make_split(table, "auto", 0.2, 0.2, 0).count("test") > 0  # no test part given: carved out of train


def test_csv_column_options_and_errors(tmp_path):
    root = digit_folder(tmp_path / "img", classes=(0, 1), per_class=3)
    csv = tmp_path / "t.csv"
    csv.write_text("who,what\n1,2\n")
    with pytest.raises(DataError, match=r"t.csv: no image path column .*columns found: who, what"):
        read_data(csv)
    csv.write_text("diagnosis,file\n" + "\n".join(f"{f.parent.name},{f.parent.name}/{f.name}" for f in sorted(root.rglob("*.png"))))
    with pytest.raises(DataError, match="t.csv: no column 'grade' .*columns found: diagnosis, file"):
        read_data(csv, options={"label_column": "grade"})
    table = read_data(csv, options={"label_column": "diagnosis", "root": "img"})
    assert table.report.counts == {"0": 3, "1": 3} and not table.has_given_split
    table = read_data(csv, options={"label_column": "diagnosis", "root": "img", "colour": "red"})
    assert any("unknown option 'colour'" in w for w in table.report.warnings)
    (tmp_path / "bin.csv").write_bytes(b"\0\1\2" * 100)
    with pytest.raises(DataError, match="bin.csv: not a text file"):
        read_data(tmp_path / "bin.csv")


# --- NPZ -----------------------------------------------------------------------------------------
def medmnist_like(path, n=(40, 10, 10)):
    X, y = mixed_digits(sum(n))
    arrays, start = {}, 0
    for split, k in zip(("train", "val", "test"), n):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = X[start:start + k], y[start:start + k, None]
        start += k
    np.savez_compressed(path, **arrays)
    return arrays


def test_npz_medmnist_style_keeps_the_given_split_and_pixels(tmp_path):
    arrays = medmnist_like(tmp_path / "m.npz")
    table = read_data(tmp_path / "m.npz", options={"class_names": ["zero", "one", "two"]})
    assert table.reader_id == "npz" and table.has_given_split and len(table) == 60
    assert table.class_names == ["zero", "one", "two"]
    assert table.items[42].ref == "val/2" and table.items[42].split == "val"
    assert np.array_equal(table.load_image(42)[..., 0], arrays["val_images"][2])
    assert table.labels()[42] == arrays["val_labels"][2, 0]
    split = make_split(table, "auto", 0.3, 0.3, 1)
    assert split == [it.split for it in table.items]
    assert table.report.sizes["modes"] == {"L": 60}
    fp = table.fingerprint()
    assert read_data(tmp_path / "m.npz", options={"class_names": ["zero", "one", "two"]}).fingerprint() == fp
    arrays["test_images"][0, 0, 0] ^= 255
    np.savez_compressed(tmp_path / "m.npz", **arrays)
    assert read_data(tmp_path / "m.npz", options={"class_names": ["zero", "one", "two"]}).fingerprint() != fp


def test_npz_plain_colour_channel_first_and_float(tmp_path):
    X, y = mnist()
    rgb = np.repeat(X[:20, None], 3, axis=1).astype(np.float32) / 255  # (N, 3, H, W) in [0, 1]
    np.savez(tmp_path / "p.npz", x=rgb, y=y[:20])
    table = read_data(tmp_path / "p.npz")
    assert not table.has_given_split and table.items[0].ref == "x/0"
    assert np.abs(table.load_image(3)[..., 1].astype(int) - X[3]).max() <= 1
    assert table.report.sizes["modes"] == {"RGB (float32)": 20}


def test_npz_multilabel_and_bad_keys_are_refused(tmp_path):
    X, _ = mnist()
    np.savez(tmp_path / "ml.npz", images=X[:10], labels=np.zeros((10, 4)))
    with pytest.raises(DataError, match="ml.npz: labels 'labels' have shape .*multi-label data is not supported"):
        read_data(tmp_path / "ml.npz")
    np.savez(tmp_path / "k.npz", pixels=X[:10])
    with pytest.raises(DataError, match="k.npz: no image array found .*keys found: pixels"):
        read_data(tmp_path / "k.npz")


@pytest.mark.shared
def test_breastmnist_official_split():
    table = read_data(shared_file("medmnist", "breastmnist.npz"))
    assert table.class_names == ["0", "1"] and table.has_given_split and not table.report.skipped
    split = make_split(table, "auto", 0.15, 0.15, 0)
    assert [split.count(s) for s in ("train", "val", "test")] == [546, 78, 156]
    assert table.load_image(0).shape == (28, 28, 3)


# --- choosing a reader, plugins ------------------------------------------------------------------
def test_read_data_picks_readers_and_explains_failures(tmp_path):
    digit_folder(tmp_path / "f", classes=(0, 1), per_class=2)
    medmnist_like(tmp_path / "m.npz", (4, 2, 2))
    assert read_data(tmp_path / "f").reader_id == "folder"
    assert read_data(tmp_path / "m.npz").reader_id == "npz"
    assert read_data(tmp_path / "f", fmt="dicom").reader_id == "dicom"
    with pytest.raises(DataError, match="nowhere: no such file or folder"):
        read_data(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"unknown data format 'coco' \(known: auto, csv, dicom, folder, npz\)"):
        read_data(tmp_path / "f", fmt="coco")
    (tmp_path / "x.bin").write_bytes(b"1")
    with pytest.raises(DataError, match="x.bin: no reader recognises this data"):
        read_data(tmp_path / "x.bin")


class RowsReader(DatasetReader):
    """A third-party reader: only scan() and load_image(); one of its images is broken."""

    id, title = "rows", "Rows"

    def can_read(self, path):
        return path.suffix == ".rows"

    def scan(self, path, options):
        return Scan([Item(f"row/{i}", "ab"[i % 2], meta={"mode": "L"}) for i in range(6)])

    def load_image(self, item):
        if item.ref == "row/5":
            raise RuntimeError("boom")
        return np.full((8, 8, 3), int(item.ref[-1]), np.uint8)


def test_third_party_reader_and_the_plugin_hook(tmp_path):
    assert [r.id for r in tlstudio_dataset_readers()] == ["folder", "csv", "npz", "dicom"]
    (tmp_path / "d.rows").write_text("")
    table = read_data(tmp_path / "d.rows", readers=[*builtin_readers(), RowsReader()])
    assert isinstance(table, ImageTable) and table.reader_id == "rows" and len(table) == 5
    assert table.report.skipped[0].ref == "row/5" and "boom" in table.report.skipped[0].reason
    assert table.report.counts == {"a": 3, "b": 2} and table.report.sizes["modes"] == {"L": 5}
