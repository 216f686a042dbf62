"""Tab-separated text files as they come: the label in either column, with or without a header,
and a plain message when the columns read look swapped."""
from __future__ import annotations

import pytest
from text_helpers import keyword_sentences

from tlstudio.core.data import read_data
from tlstudio.core.data.tabbed import detect_layout
from tlstudio.core.data.text import check_trainable_texts
from tlstudio.core.errors import DataError

TEXT = "text-classification"


def sms_rows(n: int = 30) -> list[tuple[str, str]]:
    """(label, text): 'spam' for the positive keyword sentences, 'ham' for the others."""
    return [("spam" if y == "positive" else "ham", t) for t, y in keyword_sentences(n)]


def write(path, lines: list[str]):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_label_tab_text_without_a_header_reads_correctly(tmp_path):
    """The layout of the public SMS / spam sets: label<TAB>text, no header, no file suffix."""
    rows = sms_rows(30)
    f = write(tmp_path / "SMSSpamCollection", [f"{y}\t{t}" for y, t in rows])
    t = read_data(f, task=TEXT)
    assert t.reader_id == "text-uci" and t.class_names == ["ham", "spam"]
    assert len(t) == 60 and not t.report.skipped and not t.report.duplicates
    assert {(it.label, it.meta["text"]) for it in t.items} == set(rows)  # every text with its own label
    assert any("read as label<TAB>text" in w for w in t.report.warnings)
    assert not any("swapped" in w for w in t.report.warnings)
    check_trainable_texts(t)


def test_a_header_line_is_found_and_not_read_as_a_row(tmp_path):
    rows = sms_rows(20)
    named = write(tmp_path / "named", ["label\tmessage"] + [f"{y}\t{t}" for y, t in rows])
    t = read_data(named, task=TEXT)
    assert t.reader_id == "text-uci" and t.class_names == ["ham", "spam"] and len(t) == 40
    assert any("after a header line" in w for w in t.report.warnings)
    # a .tsv whose header names its columns is the table reader's, the label found by name
    t = read_data(write(tmp_path / "named.tsv", named.read_text(encoding="utf-8").splitlines()), task=TEXT)
    assert t.reader_id == "text-csv" and t.class_names == ["ham", "spam"] and len(t) == 40
    # columns with names nobody would guess (v1, v2 ...): the lone first label gives the header away
    odd = read_data(write(tmp_path / "odd.tsv", ["category\tv9"] + [f"{y}\t{t}" for y, t in rows]), task=TEXT)
    assert odd.reader_id == "text-uci" and odd.class_names == ["ham", "spam"] and len(odd) == 40
    # text first with a header, and the UCI layout without one, as before
    uci = read_data(write(tmp_path / "uci.txt", [f"{t}\t{1 if y == 'spam' else 0}" for y, t in rows]), task=TEXT)
    assert uci.class_names == ["0", "1"] and len(uci) == 40 and not uci.report.warnings
    # set by the options where detection should not decide
    t = read_data(tmp_path / "odd.tsv", fmt="text-uci", options={"header": "no", "label_column": "first"}, task=TEXT)
    assert "category" in t.class_names  # the header read as a row, as asked
    with pytest.raises(DataError, match="option label_column: expected auto or first or last"):
        read_data(tmp_path / "odd.tsv", fmt="text-uci", options={"label_column": "middle"}, task=TEXT)


def test_columns_read_swapped_get_a_message_that_says_so(tmp_path):
    rows = sms_rows(30)
    f = write(tmp_path / "spam.txt", [f"{y}\t{t}" for y, t in rows])
    t = read_data(f, task=TEXT, options={"label_column": "last"})  # forced the wrong way round
    swapped = [w for w in t.report.warnings if "look swapped" in w]
    assert swapped and "'ham', 'spam'" in swapped[0] and "label_column" in swapped[0]
    with pytest.raises(DataError, match="look swapped"):
        check_trainable_texts(t)  # every "text" is ham or spam: nothing usable, and the reason why
    assert "look swapped" in t.report.summary()


def test_detect_layout_decides_on_the_small_set_of_labels():
    lines = [f"{t}\t{y}" for t, y in keyword_sentences(10)]
    assert not detect_layout(lines).label_first and not detect_layout(lines).header
    flipped = [f"{y}\t{t}" for t, y in keyword_sentences(10)]
    lay = detect_layout(flipped)
    assert lay.label_first and lay.split("positive\tA text\twith a tab") == ("A text\twith a tab", "positive")
