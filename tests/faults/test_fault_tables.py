"""Malformed tables and annotation files: image CSV, text CSV / JSON lines / sentence files,
COCO, Pascal VOC, box and caption CSVs.  A bad row is skipped naming its line and what is
wrong, the good rows are still used; a file that cannot be read at all is refused in one
plain sentence naming the file (and the line where there is one)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from faultlib import assert_plain, cli, digits_folder, report

from tlstudio.core.data.digit_scenes import write_digit_scenes


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return digits_folder(tmp_path_factory.mktemp("csvimg") / "imgs", classes=(0, 1), per_class=4)


def _rows(images: Path) -> list[str]:
    return [f"imgs/{p.parent.name}/{p.name},{p.parent.name}" for p in sorted(images.rglob("*.png"))]


def image_csv(folder: Path, images: Path, extra: list[str], header: str = "path,label", at: int = 2) -> Path:
    """tbl.csv beside a copy of the images: the 8 good rows, ``extra`` lines inserted after ``at`` rows."""
    shutil.copytree(images, folder / "imgs")
    rows = _rows(images)
    lines = [header, *rows[:at], *extra, *rows[at:]]
    path = folder / "tbl.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# extra lines, the line number reported, words of the reason, usable images
CSV_SKIPS = [
    ("unbalanced-quote", ['"imgs/0/missing.png,0'], 4, "quote", 8),
    ("label-with-line-break", ['imgs/0/x.png,"mal', 'ignant"'], 4, "quote", 8),
    ("missing-file", ["imgs/0/nope.png,0"], 4, "file not found: imgs/0/nope.png", 8),
    ("empty-label", ["imgs/0/extra.png,"], 4, "empty label", 8),
    ("control-character", ["imgs/0/extra.png,be\x07nign"], 4, "control character", 8),
    ("listed-again", ["imgs/0/{first},0"], 4, "listed again", 8),
    ("long-path", ["imgs/" + "x" * 5000 + ".png,0"], 4, "file not found", 8),
    ("text-as-image", ["imgs/notes.png,0"], 4, "looks like text", 8),
]


@pytest.mark.parametrize("name, extra, line, words, usable", CSV_SKIPS, ids=[c[0] for c in CSV_SKIPS])
def test_csv_bad_row_is_skipped_by_line(tmp_path, images, name, extra, line, words, usable):
    first = sorted((images / "0").glob("*.png"))[0].name
    extra = [e.replace("{first}", first) for e in extra]  # an image of the good rows (line 2), named again
    path = image_csv(tmp_path, images, extra, at=2)
    (tmp_path / "imgs" / "notes.png").write_text("patient notes, not a picture\n")
    shutil.copy(next((tmp_path / "imgs" / "1").glob("*.png")), tmp_path / "imgs" / "0" / "extra.png")
    o = cli("validate-data", path, "--json")
    assert_plain(o)
    rep = report(o)
    assert sum(rep["counts"].values()) == usable, rep
    hits = [s["reason"] for s in rep["skipped"] if f"tbl.csv:{line}" in s["reason"] or s["ref"] == f"tbl.csv:{line}"]
    assert hits and words in hits[0], rep["skipped"]
    assert len(hits[0]) < 400


def test_csv_split_column_with_an_unknown_split_and_an_unseen_label(tmp_path, images):
    rows = [r + ",train" for r in _rows(images)]
    rows[0] = rows[0].replace(",train", ",later")
    rows.append(rows[1].replace(",0,train", ",7,test").replace("/0/", "/0/") + "")
    path = tmp_path / "tbl.csv"
    shutil.copytree(images, tmp_path / "imgs")
    path.write_text("path,label,split\n" + "\n".join(rows) + "\n")
    rep = report(cli("validate-data", path, "--json"))
    reasons = " | ".join(s["reason"] for s in rep["skipped"])
    assert "tbl.csv:2: unknown split 'later'" in reasons
    assert "listed again" in reasons or "never occurs in the training split" in reasons


CSV_REFUSED = [
    ("binary", lambda p: p.write_bytes(b"\x00\x01\x02" * 100), "not a text file"),
    ("empty", lambda p: p.write_text(""), "empty CSV file"),
    ("nul-byte", lambda p: p.write_text("path,label\na\x00.png,0\n"), "not a text file"),
    ("no-path-column", lambda p: p.write_text("name,label\na.png,0\n"), "no image path column"),
    ("giant-cell", lambda p: p.write_text('path,label\n"' + "y" * 200_000 + '",0\n'), "cannot read as CSV"),
]


@pytest.mark.parametrize("name, write, words", CSV_REFUSED, ids=[c[0] for c in CSV_REFUSED])
def test_unreadable_csv_is_refused_in_plain_words(tmp_path, name, write, words):
    path = tmp_path / "tbl.csv"
    write(path)
    o = cli("validate-data", path)
    assert_plain(o)
    assert o.code == 1 and str(path) in o.err and words in o.err, o.err
    assert len(o.err) < 600


def test_csv_options_that_are_wrong_are_named(tmp_path, images):
    path = image_csv(tmp_path, images, [])
    for opt, words in (("path_column=nope", "no column 'nope'"), ("classes=a\nb", "line break"),
                       ("garbage", "--option expects KEY=VALUE")):
        o = cli("validate-data", path, "--option", opt)
        assert_plain(o)
        assert o.code == 1 and words in o.err, (opt, o.err)


# --- text ---------------------------------------------------------------------------------------
GOOD_TEXTS = [("the scan looks clear", "benign"), ("an irregular mass is seen", "malignant"),
              ("no change since last year", "benign"), ("spiculated margins noted", "malignant")] * 3


def jsonl(path: Path, extra: list[str]) -> Path:
    lines = [json.dumps({"text": f"{t} ({i})", "label": lab}) for i, (t, lab) in enumerate(GOOD_TEXTS)]
    path.write_text("\n".join(lines[:2] + extra + lines[2:]) + "\n")
    return path


TEXT_SKIPS = [
    ("broken-json", ['{"text": "cut off', ], "not valid JSON"),
    ("not-an-object", ['["a", "b"]'], "not a JSON object"),
    ("empty-text", [json.dumps({"text": "  ", "label": "benign"})], "empty text"),
    ("no-label", [json.dumps({"text": "a lone finding"})], "no label"),
    ("label-line-break", [json.dumps({"text": "mass", "label": "malig\nnant"})], "line break"),
]


@pytest.mark.parametrize("name, extra, words", TEXT_SKIPS, ids=[c[0] for c in TEXT_SKIPS])
def test_jsonl_bad_line_is_skipped_by_line(tmp_path, name, extra, words):
    path = jsonl(tmp_path / "notes.jsonl", extra)
    o = cli("validate-data", path, "--task", "text-classification", "--json")
    assert_plain(o)
    rep = report(o)
    assert sum(rep["counts"].values()) == len(GOOD_TEXTS), rep
    hit = [s for s in rep["skipped"] if s["ref"] == "notes.jsonl:3"]
    assert hit and words in hit[0]["reason"], rep["skipped"]


TEXT_REFUSED = [
    ("notes.csv", 'text,label\n"first note,benign\nsecond,malignant\nthird,benign\n', "notes.csv:2", "never closed"),
    ("notes.jsonl", b"\x00\x01binary" * 50, "notes.jsonl", "not a text file"),
    ("notes.json", '[{"text": "a", "label": "b"},', "notes.json", "not valid JSON"),
    ("notes.csv", "review,stars\nfine,5\n", "notes.csv", "no label column"),
]


@pytest.mark.parametrize("name, content, where, words", TEXT_REFUSED, ids=[f"{c[0]}-{c[3]}" for c in TEXT_REFUSED])
def test_unreadable_text_file_is_refused_naming_it(tmp_path, name, content, where, words):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    o = cli("validate-data", path, "--task", "text-classification")
    assert_plain(o)
    assert o.code == 1 and where in o.err and words in o.err, o.err


def test_sentence_file_line_without_a_label_is_skipped(tmp_path):
    lines = [f"{t} {i}\t{int(lab == 'benign')}" for i, (t, lab) in enumerate(GOOD_TEXTS)]
    path = tmp_path / "reviews.txt"
    path.write_text("\n".join(lines[:3] + ["a sentence without its label"] + lines[3:]) + "\n")
    o = cli("validate-data", path, "--task", "text-classification", "--json")
    assert_plain(o)
    rep = report(o)
    assert sum(rep["counts"].values()) == len(GOOD_TEXTS)
    assert any("reviews.txt:4" in s["ref"] for s in rep["skipped"]), rep["skipped"]


# --- detection and captioning ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return write_digit_scenes(tmp_path_factory.mktemp("scenes"), n=8, canvas_size=64, digits=(1, 3),
                              per_image=(2, 2), seed=3)


def _coco(scenes: Path, tmp: Path, change) -> Path:
    shutil.copytree(scenes / "images", tmp / "images")
    coco = json.loads((scenes / "instances.json").read_text())
    change(coco)
    (tmp / "instances.json").write_text(json.dumps(coco))
    return tmp / "instances.json"


def _ann(i):
    return lambda c: c["annotations"][i]


COCO_SKIPS = [
    ("box-outside", lambda c: _ann(0)(c).update(bbox=[500, 500, 10, 10]), "outside the image"),
    ("negative-size", lambda c: _ann(0)(c).update(bbox=[10, 10, -5, 8]), "negative size"),
    ("zero-area", lambda c: _ann(0)(c).update(bbox=[10, 10, 0, 8]), "zero-area box"),
    ("unknown-category", lambda c: _ann(0)(c).update(category_id=99), "unknown label"),
    ("not-a-number", lambda c: _ann(0)(c).update(bbox=["a", 1, 2, 3]), "x is not a number ('a')"),
    ("missing-image", lambda c: c["images"][1].update(file_name="images/gone.png"), "image file not found"),
    ("unknown-image-id", lambda c: _ann(0)(c).update(image_id=777), "is not in 'images'"),
    ("image-without-name", lambda c: c["images"][2].pop("file_name"), "needs 'id' and 'file_name'"),
]


@pytest.mark.parametrize("name, change, words", COCO_SKIPS, ids=[c[0] for c in COCO_SKIPS])
def test_coco_bad_box_or_image_is_skipped(tmp_path, scenes, name, change, words):
    path = _coco(scenes, tmp_path, change)
    o = cli("validate-data", path, "--task", "detection", "--json")
    assert_plain(o)
    rep = report(o)
    assert any(words in s["reason"] for s in rep["skipped"]), rep["skipped"]
    assert rep["annotations"] >= 6  # the other boxes are still used


def test_voc_broken_xml_bad_box_and_missing_image_are_skipped(tmp_path, scenes):
    import csv as _csv

    ann, jpg = tmp_path / "voc" / "Annotations", tmp_path / "voc" / "JPEGImages"
    ann.mkdir(parents=True)
    jpg.mkdir()
    with open(scenes / "boxes.csv") as f:
        rows = list(_csv.DictReader(f))
    by_image: dict[str, list] = {}
    for r in rows:
        by_image.setdefault(r["image"], []).append(r)
    for k, (image, boxes) in enumerate(by_image.items()):
        stem = Path(image).stem
        shutil.copy(scenes / image, jpg / f"{stem}.png")
        objs = ""
        for j, r in enumerate(boxes):
            x1, x2 = (r["x2"], r["x1"]) if (k, j) == (1, 0) else (int(r["x1"]) + 1, r["x2"])  # one box: corners swapped
            objs += (f"<object><name>{r['label']}</name><bndbox><xmin>{x1}</xmin><ymin>{int(r['y1']) + 1}</ymin>"
                     f"<xmax>{x2}</xmax><ymax>{r['y2']}</ymax></bndbox></object>")
        (ann / f"{stem}.xml").write_text(f"<annotation><filename>{stem}.png</filename><size><width>64</width>"
                                         f"<height>64</height></size>{objs}</annotation>")
    (ann / "broken.xml").write_text("<annotation><filename>x.png</filename><object>")
    (ann / "orphan.xml").write_text("<annotation><filename>nowhere.png</filename></annotation>")
    o = cli("validate-data", tmp_path / "voc", "--task", "detection", "--json")
    assert_plain(o)
    rep = report(o)
    reasons = " | ".join(s["reason"] for s in rep["skipped"])
    assert "broken.xml: not valid XML" in reasons and "image file not found: nowhere.png" in reasons
    assert "negative size" in reasons and rep["annotations"] == len(rows) - 1


def test_box_csv_bad_number_and_unbalanced_quote(tmp_path, scenes):
    shutil.copytree(scenes / "images", tmp_path / "images")
    lines = (scenes / "boxes.csv").read_text().splitlines()
    bad = lines[:2] + [lines[2].replace(lines[2].split(",")[1], "left", 1)] + lines[3:]
    (tmp_path / "boxes.csv").write_text("\n".join(bad) + "\n")
    o = cli("validate-data", tmp_path / "boxes.csv", "--task", "detection", "--json")
    assert_plain(o)
    assert any("boxes.csv:3" in s["reason"] and "x1" in s["reason"] for s in report(o)["skipped"])
    (tmp_path / "boxes.csv").write_text("\n".join(lines[:3] + ['"' + lines[3]] + lines[4:]) + "\n")
    o = cli("validate-data", tmp_path / "boxes.csv", "--task", "detection")
    assert_plain(o)
    assert o.code == 1 and "boxes.csv:4" in o.err and "never closed" in o.err


def test_caption_files_with_empty_captions_and_missing_images(tmp_path, scenes):
    shutil.copytree(scenes / "images", tmp_path / "images")
    lines = (scenes / "captions.csv").read_text().splitlines()
    lines[1] = lines[1].split(",")[0] + ","
    lines.append("images/gone.png,a digit one")
    (tmp_path / "captions.csv").write_text("\n".join(lines) + "\n")
    o = cli("validate-data", tmp_path / "captions.csv", "--task", "captioning", "--json")
    assert_plain(o)
    reasons = " | ".join(s["reason"] for s in report(o)["skipped"])
    assert "empty caption" in reasons and "image file not found: images/gone.png" in reasons
    caps = json.loads((scenes / "captions.json").read_text())
    caps["annotations"][0].pop("caption")
    caps["images"][1]["file_name"] = "images/absent.png"
    (tmp_path / "captions.json").write_text(json.dumps(caps))
    o = cli("validate-data", tmp_path / "captions.json", "--task", "captioning", "--json")
    assert_plain(o)
    reasons = " | ".join(s["reason"] for s in report(o)["skipped"])
    assert "needs 'image_id' and 'caption'" in reasons and "image file not found: images/absent.png" in reasons


def test_coco_that_is_not_json_is_refused(tmp_path):
    (tmp_path / "instances.json").write_text('{"images": [ {"id": 1, ')
    o = cli("validate-data", tmp_path / "instances.json", "--task", "detection")
    assert_plain(o)
    assert o.code == 1 and "instances.json" in o.err, o.err
