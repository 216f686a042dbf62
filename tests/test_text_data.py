"""Text data: the CSV / TSV / JSONL / UCI readers, their validation report, splits, and
that text and image readers never take each other's data."""
from __future__ import annotations

import json

import pytest
from conftest import shared_file
from text_helpers import keyword_sentences, write_uci

from tlstudio.core.data import make_split, read_data, split_counts
from tlstudio.core.data.text import JsonlTextReader, TextTableReader, UciTextReader, check_trainable_texts
from tlstudio.core.errors import DataError

TEXT = "text-classification"


def reasons(table) -> dict[str, str]:
    return {s.ref: s.reason for s in table.report.skipped}


def test_csv_with_chosen_columns_and_a_validation_report(tmp_path):
    f = tmp_path / "notes.csv"
    f.write_text(
        "id,note,finding,split\n"
        '1,"Clear lungs, no effusion.",normal,train\n'        # line 2
        "2,Large left pleural effusion.,abnormal,train\n"     # 3: same text as line 11, other label
        "3,   ,normal,train\n"                                # 4: empty text
        "4,Small nodule in the right upper lobe.,,train\n"    # 5: no label
        "5,Heart size normal.,maybe,train\n"                  # 6: unknown label
        "6,Bilateral infiltrates.,abnormal,holdout\n"         # 7: unknown split
        '7,"clear  LUNGS,  no effusion.",normal,train\n'      # 8: the text of line 2 again
        "8,Heart size normal.,normal,val\n"
        "9,Right lower lobe consolidation.,abnormal,test\n"
        "10,Large left pleural effusion.,normal,test\n"       # 11
        "11,No acute findings.,normal,test\n"
        "12,Small pneumothorax on the left.,abnormal,val\n"
        "13,Massive cardiomegaly.,abnormal,train\n",
        encoding="utf-8")
    t = read_data(f, options={"text_column": "note", "label_column": "finding", "classes": "normal,abnormal"},
                  task=TEXT)
    assert t.reader_id == "text-csv"
    r = reasons(t)
    assert r["notes.csv:4"] == "empty text"
    assert r["notes.csv:5"] == "no label"
    assert r["notes.csv:6"].startswith("unknown label 'maybe'")
    assert r["notes.csv:7"].startswith("unknown split 'holdout'")
    # the same words in any case and spacing are one text, used once; with two labels, not at all
    assert r["notes.csv:8"] == "duplicate of notes.csv:2"
    assert "different label" in r["notes.csv:3"] and "different label" in r["notes.csv:11"]
    assert any("occur with different labels" in w for w in t.report.warnings)
    assert len(t) == 6 and t.class_names == ["normal", "abnormal"]  # the order the option gives
    assert {it.ref: it.split for it in t.items}["notes.csv:10"] == "test"
    assert all(it.meta["text"].strip() for it in t.items)
    summary = t.report.summary()
    assert "6 usable texts in 2 classes" in summary and "empty text 1" in summary and "unknown label 1" in summary


def test_csv_columns_found_by_name_and_offered_to_the_window(tmp_path):
    f = tmp_path / "reviews.tsv"
    f.write_text("review\tsentiment\nLoved it\tpos\nHated it\tneg\nFine, really fine\tpos\n", encoding="utf-8")
    t = read_data(f, task=TEXT)
    assert t.reader_id == "text-csv" and t.class_names == ["neg", "pos"] and len(t) == 3
    choices = TextTableReader().option_choices(f)
    assert choices["text_column"] == ["review", "sentiment"] and "" in choices["split_column"]
    with pytest.raises(DataError, match=r"no column 'body' \(option text_column\); columns found: review, sentiment"):
        read_data(f, options={"text_column": "body"}, task=TEXT)
    odd = tmp_path / "export.csv"
    odd.write_text("Report_Body;Outcome\nNo fracture seen;normal\nDisplaced fracture;abnormal\n", encoding="utf-8")
    with pytest.raises(DataError, match="no text column .* columns found: Report_Body, Outcome.* option text_column"):
        read_data(odd, task=TEXT)
    t = read_data(odd, options={"text_column": "Report_Body", "label_column": "Outcome"}, task=TEXT)
    assert t.texts() == ["No fracture seen", "Displaced fracture"]


def test_jsonl_reader_skips_bad_lines_and_names_them(tmp_path):
    f = tmp_path / "tickets.jsonl"
    lines = [json.dumps({"body": "Printer jams every morning", "team": "hardware"}), "{not json",
             json.dumps(["a", "list"]), json.dumps({"body": "Cannot log in to email", "team": "accounts"}),
             json.dumps({"body": "", "team": "accounts"}), ""]
    f.write_text("\n".join(lines), encoding="utf-8")
    t = read_data(f, options={"text_column": "body", "label_column": "team"}, task=TEXT)
    assert t.reader_id == "text-jsonl" and len(t) == 2
    r = reasons(t)
    assert r["tickets.jsonl:2"].startswith("not valid JSON") and "not a JSON object" in r["tickets.jsonl:3"]
    assert r["tickets.jsonl:5"] == "empty text"
    assert JsonlTextReader().option_choices(f)["label_column"] == ["body", "team"]


def test_uci_folder_reader_with_label_names_and_test_files(tmp_path):
    rows = keyword_sentences(20)
    write_uci(tmp_path / "uci" / "shop_labelled.txt", rows[:20])
    write_uci(tmp_path / "uci" / "cinema_labelled.txt", rows[20:])
    (tmp_path / "uci" / "readme.txt").write_text("About this data set.\nPlease cite the paper.\n", encoding="utf-8")
    with open(tmp_path / "uci" / "shop_labelled.txt", "a", encoding="utf-8") as fh:
        fh.write("a sentence without its label\n")
    t = read_data(tmp_path / "uci", options={"label_names": "0=negative,1=positive", "test_files": "cinema"}, task=TEXT)
    assert t.reader_id == "text-uci" and t.class_names == ["negative", "positive"]
    assert any("readme.txt" in w and "ignored" in w for w in t.report.warnings)
    assert reasons(t)["shop_labelled.txt:21"] == "no tab between the sentence and its label"
    assert {it.split for it in t.items if it.ref.startswith("cinema")} == {"test"}
    assert {it.split for it in t.items if it.ref.startswith("shop")} == {"train"}
    split = make_split(t, "auto", 0.2, 0.2, seed=0)  # the given test file is kept; val comes out of train
    counts = split_counts(t, split)
    assert sum(counts["test"].values()) == 20 and sum(counts["val"].values()) > 0
    assert all(s == "test" for it, s in zip(t.items, split) if it.ref.startswith("cinema"))
    assert UciTextReader().option_choices(tmp_path / "uci")["test_files"] == ["cinema_labelled", "shop_labelled"]
    preview = t.preview(per_class=3)
    assert list(preview) == ["negative", "positive"] and all(len(v) == 3 for v in preview.values())
    assert all(any(w in s.lower() for w in ("great", "excellent", "wonderful", "love", "perfect", "superb"))
               for s in preview["positive"])
    with pytest.raises(DataError, match="option test_files: no file 'imdb'"):
        read_data(tmp_path / "uci", options={"test_files": "imdb"}, task=TEXT)


def test_text_and_image_readers_keep_to_their_task(tmp_path, tiny_digits):
    f = write_uci(tmp_path / "s.txt", keyword_sentences(5))
    with pytest.raises(DataError, match="no reader recognises"):
        read_data(f)  # an image project never reads sentences as images
    with pytest.raises(DataError, match="no reader recognises"):
        read_data(tiny_digits, task=TEXT)  # nor a text project a folder of images
    assert read_data(f, task=TEXT).reader_id == "text-uci"
    with pytest.raises(DataError, match="unknown data format 'text-uci'"):
        read_data(f, fmt="text-uci")


def test_a_one_class_text_set_is_refused_with_a_clear_message(tmp_path):
    f = tmp_path / "one.csv"
    f.write_text("text,label\nfine,a\nok,a\n", encoding="utf-8")
    t = read_data(f, task=TEXT)
    with pytest.raises(DataError, match="only one class"):
        check_trainable_texts(t)


def test_uci_sentiment_sentences_all_three_sites():
    folder = shared_file("text", "sentiment_labelled_sentences")
    t = read_data(folder, task=TEXT, options={"label_names": {"0": "negative", "1": "positive"}})
    rep = t.report
    assert t.reader_id == "text-uci" and t.class_names == ["negative", "positive"]
    # 3 x 1000 sentences; sentences that repeat (same words) are reported and used once
    assert len(t) + len(rep.skipped) == 3000
    assert rep.duplicates and all(s.reason.startswith("duplicate of") for s in rep.skipped)
    assert 2950 < len(t) < 3000 and abs(rep.counts["negative"] - rep.counts["positive"]) < 20
    assert any("readme.txt" in w for w in rep.warnings)


def test_cli_validate_data_for_text(tmp_path, capsys):
    from tlstudio.cli import main

    f = write_uci(tmp_path / "s.txt", keyword_sentences(6))
    assert main(["validate-data", str(f), "--task", TEXT, "--option", "label_names='0=neg,1=pos'"]) == 0
    out = capsys.readouterr().out
    assert "12 usable texts in 2 classes" in out and "neg: 6" in out
