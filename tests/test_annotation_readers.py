"""Detection and captioning data readers on real digit scenes: the three box formats agree,
captions group per image, and bad input is listed with what and where, never fatal."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlstudio.core.data import read_data
from tlstudio.core.data.boxes import detection_readers
from tlstudio.core.data.captions import caption_readers
from tlstudio.core.data.digit_scenes import compose_scenes, write_digit_scenes
from tlstudio.core.errors import DataError

READERS = detection_readers() + caption_readers()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return write_digit_scenes(tmp_path_factory.mktemp("scenes"), n=24, canvas_size=64, digits=(1, 3, 7),
                              per_image=(2, 2), seed=5)


def _reasons(table) -> str:
    return "\n".join(f"{s.ref}: {s.reason}" for s in table.report.skipped)


def write_voc(root: Path, scenes_dir: Path) -> Path:
    """The scenes as a Pascal VOC folder (1-based inclusive pixels), from boxes.csv."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    rows: dict[str, list] = {}
    with open(scenes_dir / "boxes.csv") as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["image"], []).append(r)
    for name, boxes in rows.items():
        stem = Path(name).stem
        shutil.copy(scenes_dir / name, root / "JPEGImages" / f"{stem}.png")
        objs = "".join(f"<object><name>{b['label']}</name><difficult>0</difficult><bndbox><xmin>{int(b['x1']) + 1}</xmin>"
                       f"<ymin>{int(b['y1']) + 1}</ymin><xmax>{b['x2']}</xmax><ymax>{b['y2']}</ymax></bndbox></object>"
                       for b in boxes)
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.png</filename><size><width>64</width><height>64</height></size>{objs}</annotation>")
    return root


def test_coco_voc_and_csv_give_the_same_boxes(scenes, tmp_path):
    voc = write_voc(tmp_path / "voc", scenes)
    tables = {src.name: read_data(src, "auto", {}, READERS) for src in (scenes / "boxes.csv", scenes / "instances.json", voc)}
    assert [t.reader_id for t in tables.values()] == ["boxes-csv", "coco", "voc"]

    def boxes(t):
        return sorted((Path(it.ref).stem, tuple(b), lab) for it in t.items for b, lab in zip(it.meta["boxes"], it.meta["labels"]))

    first, *others = tables.values()
    assert first.class_names == ["1", "3", "7"] and len(first) == 24
    assert first.report.annotations == 48 and not first.report.skipped
    for t in others:
        assert t.class_names == first.class_names
        assert boxes(t) == boxes(first)
    # the boxes hold the digit's ink: pixels inside, background around
    it = first.items[0]
    img = np.asarray(Image.open(it.ref))
    x1, y1, x2, y2 = map(int, it.meta["boxes"][0])
    assert img[y1:y2, x1:x2].max() > 200
    summary = first.report.summary()
    assert "24 usable images with 48 boxes in 3 classes" in summary


def test_box_csv_lists_bad_boxes_and_keeps_the_good(scenes, tmp_path):
    shutil.copytree(scenes / "images", tmp_path / "images")
    (tmp_path / "images" / "broken.png").write_text("this is not a picture")
    ok = "images/scene-0001.png"
    rows = [
        ["image", "x1", "y1", "x2", "y2", "label"],
        [ok, 5, 5, 20, 25, "3"],              # line 2: good
        [ok, 70, 70, 90, 90, "3"],            # line 3: outside the 64x64 image
        [ok, 10, 10, 10, 30, "7"],            # line 4: zero area
        [ok, 30, 30, 20, 40, "7"],            # line 5: corners swapped
        [ok, 50, 40, 80, 60, "1"],            # line 6: reaches outside
        [ok, "a", 1, 2, 3, "1"],              # line 7: not a number
        [ok, 1, 1, 9, 9, "9"],                # line 8: unknown label (classes option)
        ["images/missing.png", 1, 1, 9, 9, "1"],  # line 9: no such file
        ["images/broken.png", 1, 1, 9, 9, "1"],   # line 10: not an image
        ["images/scene-0002.png", 70, 70, 80, 80, "1"],  # line 11: its only box is unusable
        ["images/scene-0003.png", "", "", "", "", ""],   # line 12: an image without objects
        [ok, 0, 0, 64.5, 64.5, "1"],          # line 13: half a pixel over the edge: clipped, kept
    ]
    with open(tmp_path / "boxes.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    t = read_data(tmp_path / "boxes.csv", "auto", {"classes": ["1", "3", "7"]}, READERS)
    text = _reasons(t)
    for expected in ("boxes.csv:3: box [70, 70, 90, 90] '3': box lies outside the image (64x64 pixels)",
                     "boxes.csv:4: box [10, 10, 10, 30] '7': zero-area box",
                     "boxes.csv:5: box [30, 30, 20, 40] '7': negative size",
                     "boxes.csv:6: box [50, 40, 80, 60] '1': box reaches outside the image",
                     "boxes.csv:7: x1 is not a number ('a')",
                     "boxes.csv:8: box [1, 1, 9, 9]: unknown label '9' (known: 1, 3, 7)",
                     "image file not found: images/missing.png (line 9)",
                     "boxes.csv:10:",
                     "none of this image's boxes is usable"):
        assert expected in text, f"{expected!r} not in\n{text}"
    by_name = {Path(it.ref).name: it for it in t.items}
    assert set(by_name) == {"scene-0001.png", "scene-0003.png"}
    assert by_name["scene-0001.png"].meta["boxes"] == [[5, 5, 20, 25], [0, 0, 64, 64]]
    assert by_name["scene-0003.png"].meta["boxes"] == []
    assert t.report.empty_images == 1 and t.class_names == ["1", "3"]
    assert "class '7' has no usable box" in " ".join(t.report.warnings)


def test_coco_bad_entries_are_listed(scenes, tmp_path):
    data = json.loads((scenes / "instances.json").read_text())
    data["images"].append({"id": 999, "file_name": "images/nowhere.png"})
    a = data["annotations"]
    a[0]["category_id"] = 42
    a[1]["iscrowd"] = 1
    a[2]["bbox"] = [1, 2, 3]
    a.append({"id": 777, "image_id": 12345, "category_id": 2, "bbox": [1, 1, 5, 5]})
    a.append({"id": 778, "image_id": 1, "category_id": 2, "bbox": [10, 10, 0, 8]})
    f = scenes / "bad-instances.json"
    f.write_text(json.dumps(data))
    t = read_data(f, "coco", {}, READERS)
    text = _reasons(t)
    assert "annotations[0] (id 1): box" in text and "unknown label (category_id 42" in text
    assert "crowd region (iscrowd = 1)" in text
    assert "bbox must be [x, y, width, height]" in text
    assert "image_id 12345 is not in 'images'" in text
    assert "image file not found: images/nowhere.png" in text
    assert "zero-area box" in text
    # scene 1 lost both its boxes (unknown category, crowd) and its extra box has no area: left out
    assert "none of this image's boxes is usable" in text
    assert t.report.annotations == 48 - 3 and len(t) == 23

    (tmp_path / "truncated.json").write_text('{"images": [')
    with pytest.raises(DataError, match=r"truncated.json: not valid JSON"):
        read_data(tmp_path / "truncated.json", "coco", {}, READERS)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"list.json: not a COCO file"):
        read_data(tmp_path / "list.json", "coco", {}, READERS)


def test_voc_bad_files_are_listed(scenes, tmp_path):
    voc = write_voc(tmp_path / "voc", scenes)
    (voc / "Annotations" / "broken.xml").write_text("<annotation><filename>x.png</filename")
    (voc / "Annotations" / "orphan.xml").write_text("<annotation><filename>gone.png</filename></annotation>")
    first = sorted((voc / "Annotations").glob("scene-*.xml"))[0]
    first.write_text(first.read_text().replace("</annotation>", "<object><name>cat</name><bndbox><xmin>3</xmin>"
                                               "<ymin>3</ymin><xmax>9</xmax></bndbox></object></annotation>"))
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "test.txt").write_text("scene-0002\n")
    t = read_data(voc, "auto", {}, READERS)
    text = _reasons(t)
    assert "broken.xml: not valid XML" in text
    assert "orphan.xml: image file not found: gone.png" in text
    assert "object 3 'cat': ymax is not a number (None)" in text
    assert len(t) == 24 and "cat" not in t.class_names
    assert {Path(it.ref).stem: it.split for it in t.items}["scene-0002"] == "test"


def test_caption_readers_group_captions_per_image(scenes, tmp_path):
    csv_t = read_data(scenes / "captions.csv", "auto", {}, READERS)
    coco_t = read_data(scenes / "captions.json", "auto", {}, READERS)
    assert (csv_t.reader_id, coco_t.reader_id) == ("captions-csv", "coco-captions")
    for t in (csv_t, coco_t):
        assert len(t) == 24 and t.report.annotations == 48 and t.task == "captioning"
        assert all(len(it.meta["captions"]) == 2 for it in t.items)
    one = csv_t.items[0].meta["captions"]
    assert one[0].startswith("a ") and (" left of " in one[0] or " above " in one[0])
    # Karpathy-style file (Flickr8k/30k): sentences per image, a split of its own
    imgs = [{"filename": Path(it.ref).name, "filepath": "images", "split": "restval" if k % 3 else "test",
             "sentences": [{"raw": c} for c in it.meta["captions"]]} for k, it in enumerate(coco_t.items)]
    (scenes / "dataset_digits.json").write_text(json.dumps({"images": imgs}))
    kt = read_data(scenes / "dataset_digits.json", "auto", {}, READERS)
    assert kt.reader_id == "coco-captions" and len(kt) == 24 and kt.has_given_split
    assert sum(it.split == "test" for it in kt.items) == 8


def test_caption_csv_bad_rows(scenes, tmp_path):
    shutil.copytree(scenes / "images", tmp_path / "images")
    rows = [["image", "caption"], ["images/scene-0001.png", "a 1 left of a 3"], ["images/scene-0001.png", "   "],
            ["images/scene-0002.png", "!!!"], ["images/none.png", "a 3 above a 7"], ["", "no image here"],
            ["images/scene-0003.png", "a 7  above\ta 1"]]
    with open(tmp_path / "caps.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    t = read_data(tmp_path / "caps.csv", "auto", {}, READERS)
    text = _reasons(t)
    assert "caps.csv:3: empty caption" in text
    assert "caps.csv:4: caption '!!!' has no words" in text
    assert "no usable caption (all were skipped)" in text  # scene-0002
    assert "image file not found: images/none.png" in text
    assert "caps.csv:6: no image name" in text
    assert {Path(it.ref).name: it.meta["captions"] for it in t.items} == {
        "scene-0001.png": ["a 1 left of a 3"], "scene-0003.png": ["a 7 above a 1"]}


def test_readers_come_through_the_plugin_hook_with_their_task():
    from tlstudio.core.plugins import get_plugin_manager

    pm = get_plugin_manager()
    tasks = {r.id: r.task for r in pm.readers()}
    assert {k: tasks.get(k) for k in ("coco", "voc", "boxes-csv", "coco-captions", "captions-csv")} == {
        "coco": "detection", "voc": "detection", "boxes-csv": "detection", "coco-captions": "captioning",
        "captions-csv": "captioning"}
    assert tasks["csv"] == "image-classification"
    assert {"faster-rcnn", "captioning"} <= set(pm.techniques())


def test_validate_data_cli_reports_boxes(scenes, capsys):
    from tlstudio.cli import main

    assert main(["validate-data", str(scenes / "boxes.csv")]) == 0
    out = capsys.readouterr().out
    assert "24 usable images with 48 boxes in 3 classes" in out and "boxes-csv" in out
    assert main(["validate-data", str(scenes / "captions.csv"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["reader"] == "captions-csv" and rep["annotations"] == 48 and rep["task"] == "captioning"


def test_scenes_are_real_digits_with_tight_boxes():
    s = compose_scenes(6, canvas_size=64, digits=(3, 7), per_image=(2, 2), seed=1)
    for scene in s:
        img = scene["image"]
        ink = img > 40
        for (x1, y1, x2, y2) in scene["boxes"]:
            inside = ink[y1:y2, x1:x2]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        covered = np.zeros_like(ink)
        for (x1, y1, x2, y2) in scene["boxes"]:
            covered[y1:y2, x1:x2] = True
        assert not (ink & ~covered).any()  # no ink outside the boxes
        a, b = scene["boxes"]
        if scene["relation"] == "left":
            assert a[2] <= b[0]
        else:
            assert a[3] <= b[1]
