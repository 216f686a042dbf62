"""Text-classification data: readers for CSV / TSV / JSONL tables and the UCI two-column
format (``sentence<TAB>label``), and the validation every read goes through.

    table = read_data("reviews.csv", options={"text_column": "review", "label_column": "stars"},
                      task="text-classification")
    print(table.report.summary())     # usable texts per class; empty texts, unknown labels, duplicates

Readers are registered through ``tlstudio_dataset_readers`` with ``task = "text-classification"``
(entry point ``text-readers``), exactly like the image readers.  Each reader describes its
options in ``options_help`` and offers the values it can see in a file with
:meth:`TextReader.option_choices` (the column names of a table, the files of a folder), so
that the window can show them as choices.
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from ..errors import DataError
from ..hookspecs import hookimpl
from .groups import GROUP_COLUMNS as _GROUP_COLS
from .groups import GROUP_HELP as _GROUP_HELP
from .groups import group_meta as _group_meta
from .report import Skipped
from .sanity import unclosed_quote_line
from .table import DatasetReader, natural_key
from .tabbed import detect_layout, looks_two_column
from .text_table import (FEW_TEXTS, IMBALANCE, SPLIT_NAMES, TASK, Row, TextReport, TextTable,  # noqa: F401
                         _as_list, _label_names, check_trainable_texts, validate_rows)

_TEXT_NAMES = ("text", "sentence", "sentences", "review", "reviewtext", "comment", "content", "document", "body",
               "note", "notes", "report", "message", "utterance", "abstract", "description", "tweet")
_LABEL_NAMES = ("label", "labels", "class", "target", "category", "sentiment", "classname", "diagnosis", "y")
_SPLIT_COLS = ("split", "set", "fold", "subset")
_COMMON_HELP = {
    "label_names": "names for the raw labels, e.g. {\"0\" = \"negative\", \"1\" = \"positive\"} or '0=negative,1=positive'",
    "classes": "the labels to keep (after label_names); rows with other labels are skipped as unknown labels",
    "duplicates": "drop (default): a text seen before is skipped, and texts that occur with different labels are "
                  "all skipped; keep: keep every copy (both are listed in the report)",
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _find_column(path: Path, header: list[str], given, names: tuple, what: str, option: str,
                 required: bool = True) -> int | None:
    found = ", ".join(map(str, header)) or "none"
    if given not in (None, ""):
        for i, h in enumerate(header):
            if str(h) == str(given) or _norm(h) == _norm(given):
                return i
        raise DataError(f"{path}: no column '{given}' (option {option}); columns found: {found}")
    by_name = {_norm(h): i for i, h in reversed(list(enumerate(header)))}
    for n in names:
        if n in by_name:
            return by_name[n]
    if not required:
        return None
    raise DataError(f"{path}: no {what} column (looked for {', '.join(names[:5])}; columns found: {found}). "
                    f"Choose it with the option {option}.")


# --- readers --------------------------------------------------------------------------------------
def _read_text_file(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if b"\0" in raw[:4096]:
        raise DataError(f"{path}: not a text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # spreadsheets on Windows save cp1252


def _lines(text: str) -> list[str]:
    """Lines split at newlines only (str.splitlines also splits at \\x85, \\u2028 ... inside sentences)."""
    return [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]


class TextReader(DatasetReader):
    """Base class of text readers: :meth:`rows` lists the records; :meth:`read` validates them."""

    task = TASK
    #: what to do when the text and label columns read look swapped
    swap_advice = "Choose the other column as the label with the reader options text_column and label_column."

    def rows(self, path: Path, options: dict) -> tuple[list[Row], list[Skipped], list[str]]:
        raise NotImplementedError

    def option_choices(self, path: Path) -> dict[str, list[str]]:
        """Values the window can offer for the options (column names found in the file ...)."""
        return {"duplicates": ["drop", "keep"]}

    def read(self, path: Path, options: dict | None = None, progress=None, should_stop=None) -> TextTable:
        path, options = Path(path), dict(options or {})
        rows, skipped, warnings = self.rows(path, options)
        unknown = sorted(set(options) - set(self.options_help))
        if unknown:
            warnings.insert(0, f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                               f"for the {self.id} reader (known: {', '.join(self.options_help)}): ignored")
        if progress:
            progress(len(rows), len(rows))
        return validate_rows(self, path, rows, options, skipped, warnings)


class TextTableReader(TextReader):
    id = "text-csv"
    title = "Text table (CSV / TSV)"
    description = ("A CSV or TSV file with a header row: one column of texts and one of labels (chosen in the "
                   "options, or found by name: text, sentence, review ... / label, class, target ...); an optional "
                   "split column (train/val/test) gives the split.")
    options_help = {
        "text_column": "column of texts (default: text, sentence, review, comment, note ...)",
        "label_column": "column of labels (default: label, class, target, category, sentiment ...)",
        "split_column": "column of splits train/val/test (default: split, set or fold, when present)",
        "delimiter": "column separator: ',', ';', '\\t' or '|' (default: from the file name and header row)",
        "group_column": _GROUP_HELP,
        **_COMMON_HELP,
    }

    def can_read(self, path: Path) -> bool:
        p = Path(path)
        if not p.is_file() or p.suffix.lower() not in (".csv", ".tsv", ".txt"):
            return False
        if p.suffix.lower() == ".csv":  # columns not found by name are chosen in the options (a clear message says so)
            return True
        try:  # .tsv / .txt: a header naming a text column (else it is sentence<TAB>label lines)
            header = self._table(p, {}, head_only=True)[0]
        except DataError:
            return False
        return _find_column(p, header, None, _TEXT_NAMES, "text", "text_column", required=False) is not None

    def _table(self, path: Path, options: dict, head_only: bool = False) -> tuple[list[str], list[tuple[int, list[str]]]]:
        text = _read_text_file(path)
        if head_only:
            text = text[:65536]
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        delim = options.get("delimiter")
        if delim in ("\\t", "tab", "TAB"):
            delim = "\t"
        if not delim:
            if path.suffix.lower() == ".tsv":
                delim = "\t"
            else:
                counts = {d: first.count(d) for d in (",", "\t", ";", "|")}
                delim = max(counts, key=counts.get) if max(counts.values()) else ","
        try:
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
            header = [h.strip() for h in next(reader, [])]
            rows = [] if head_only else [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
        except csv.Error as e:
            raise DataError(f"{path}: cannot read as a table: {e}") from None
        line = None if head_only else unclosed_quote_line(text, delimiter=delim)
        if line is not None:
            raise DataError(f"{path}:{line}: a quote (\") opens in this row and is never closed, so the rest of the "
                            "file would read as one text; close or remove the quote")
        if not any(header):
            raise DataError(f"{path}: empty file (expected a header row such as text,label)")
        return header, rows

    def option_choices(self, path: Path) -> dict[str, list[str]]:
        header = self._table(Path(path), {}, head_only=True)[0]
        return {"text_column": header, "label_column": header, "split_column": ["", *header],
                "delimiter": [",", ";", "\\t", "|"], "duplicates": ["drop", "keep"]}

    def rows(self, path: Path, options: dict):
        header, table = self._table(path, options)
        tcol = _find_column(path, header, options.get("text_column"), _TEXT_NAMES, "text", "text_column")
        lcol = _find_column(path, header, options.get("label_column"), _LABEL_NAMES, "label", "label_column")
        scol = _find_column(path, header, options.get("split_column"), _SPLIT_COLS, "split", "split_column", required=False)
        gcol = _find_column(path, header, options.get("group_column"), _GROUP_COLS, "group", "group_column", required=False)
        fcols = [i for i in range(len(header)) if i not in (tcol, lcol, scol, gcol) and header[i]]

        def cell(row, i):
            return row[i] if i is not None and i < len(row) else None

        rows = [Row(f"{path.name}:{line}", cell(r, tcol), cell(r, lcol), cell(r, scol),
                    _group_meta(cell(r, gcol), {header[i]: cell(r, i) for i in fcols})) for line, r in table]
        warnings = [] if rows else [f"{path}: the table has a header but no rows"]
        return rows, [], warnings


class JsonlTextReader(TextReader):
    id = "text-jsonl"
    title = "JSON lines"
    description = ("A .jsonl file: one JSON object per line with a text field and a label field (chosen in the "
                   "options, or found by name), optionally a split field.  A .json file holding a list of such "
                   "objects is read too.")
    options_help = {
        "text_column": "field of the text (default: text, sentence, review, comment, note ...)",
        "label_column": "field of the label (default: label, class, target, category, sentiment ...)",
        "split_column": "field of the split train/val/test (default: split, set or fold, when present)",
        "group_column": _GROUP_HELP,
        **_COMMON_HELP,
    }

    def can_read(self, path: Path) -> bool:
        p = Path(path)
        return p.is_file() and p.suffix.lower() in (".jsonl", ".ndjson", ".json")

    def _records(self, path: Path) -> tuple[list[tuple[int, dict]], list[Skipped]]:
        text = _read_text_file(path)
        if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: not valid JSON: {e}") from None
            recs = [(i + 1, r) for i, r in enumerate(data)]
        else:
            recs, bad = [], []
            for n, line in enumerate(_lines(text), 1):
                if not line.strip():
                    continue
                try:
                    recs.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    bad.append(Skipped(f"{path.name}:{n}", f"not valid JSON ({e.msg})"))
            good = [(n, r) for n, r in recs if isinstance(r, dict)]
            bad += [Skipped(f"{path.name}:{n}", f"not a JSON object (a {type(r).__name__})")
                    for n, r in recs if not isinstance(r, dict)]
            return good, bad
        good = [(n, r) for n, r in recs if isinstance(r, dict)]
        bad = [Skipped(f"{path.name}:{n}", f"not a JSON object (a {type(r).__name__})")
               for n, r in recs if not isinstance(r, dict)]
        return good, bad

    def _keys(self, recs) -> list[str]:
        keys: dict[str, None] = {}
        for _, r in recs[:200]:
            keys.update(dict.fromkeys(map(str, r)))
        return list(keys)

    def option_choices(self, path: Path) -> dict[str, list[str]]:
        keys = self._keys(self._records(Path(path))[0])
        return {"text_column": keys, "label_column": keys, "split_column": ["", *keys], "duplicates": ["drop", "keep"]}

    def rows(self, path: Path, options: dict):
        recs, bad = self._records(path)
        if not recs:
            raise DataError(f"{path}: no JSON objects found" + (f" ({bad[0].reason})" if bad else ""))
        keys = self._keys(recs)
        tk = keys[_find_column(path, keys, options.get("text_column"), _TEXT_NAMES, "text", "text_column")]
        lk = keys[_find_column(path, keys, options.get("label_column"), _LABEL_NAMES, "label", "label_column")]
        si = _find_column(path, keys, options.get("split_column"), _SPLIT_COLS, "split", "split_column", required=False)
        sk = keys[si] if si is not None else None
        gi = _find_column(path, keys, options.get("group_column"), _GROUP_COLS, "group", "group_column", required=False)
        gk = keys[gi] if gi is not None else None
        other = [k for k in keys if k not in (tk, lk, sk, gk)]

        def get(r, k):
            v = r.get(k) if k is not None else None
            return None if v is None else (json.dumps(v) if isinstance(v, (dict, list)) else str(v))

        return [Row(f"{path.name}:{n}", get(r, tk), get(r, lk), get(r, sk),
                    _group_meta(get(r, gk), {k: get(r, k) for k in other if k in r})) for n, r in recs], bad, []


class UciTextReader(TextReader):
    id = "text-uci"
    title = "Tab-separated text and label (two columns)"
    description = ("Lines of 'text<TAB>label' (the UCI sentence sets) or 'label<TAB>text' (SMS / spam sets), with or "
                   "without a header line, in one file or in a folder of .txt/.tsv files (each a site or source; files "
                   "not in this format, such as a readme, are ignored).  The label column is the one that holds a "
                   "small set of short values (or set it with label_column).  test_files keeps whole files aside as "
                   "the test set (train on some sources, test on another).")
    options_help = {
        "label_column": "which column holds the labels: auto (default: the one that is a small set of values), "
                        "first or last",
        "header": "is the first line a header naming the columns: auto (default), yes or no",
        "files": "only these files of the folder (names or stems, e.g. amazon_cells_labelled, yelp)",
        "test_files": "files (names or stems) that form the test set; the others are for training (and validation)",
        "val_files": "files (names or stems) that form the validation set",
        **_COMMON_HELP,
    }
    FILE_SUFFIXES = (".txt", ".tsv")
    swap_advice = "The label is probably in the other column: set the reader option label_column (first or last)."

    @staticmethod
    def _looks_uci(path: Path, probe: int = 50) -> bool:
        try:
            text = _read_text_file(path)[:65536]
        except DataError:
            return False
        return looks_two_column([ln for ln in _lines(text) if ln.strip()][:probe])

    def _files(self, path: Path) -> tuple[list[Path], list[Path]]:
        """(data files, ignored files) of a folder, or ([path], []) for a file."""
        if path.is_file():
            return [path], []
        files = sorted((f for f in path.iterdir() if f.is_file() and f.suffix.lower() in self.FILE_SUFFIXES
                        and not f.name.startswith(".")), key=lambda f: natural_key(f.name))
        good = [f for f in files if self._looks_uci(f)]
        return good, [f for f in files if f not in good]

    def can_read(self, path: Path) -> bool:
        p = Path(path)
        if p.is_file():  # SMSSpamCollection and the like come without a suffix
            return p.suffix.lower() in (*self.FILE_SUFFIXES, "") and self._looks_uci(p)
        return p.is_dir() and bool(self._files(p)[0])
    def option_choices(self, path: Path) -> dict[str, list[str]]:
        names = [f.stem for f in self._files(Path(path))[0]]
        return {"label_column": ["auto", "first", "last"], "header": ["auto", "yes", "no"], "files": names,
                "test_files": names, "val_files": names, "duplicates": ["drop", "keep"]}

    @staticmethod
    def _pick(files: list[Path], wanted, option: str) -> set[Path]:
        names = _as_list(wanted)
        if not names:
            return set()
        out = set()
        for n in names:
            hit = [f for f in files if n in (f.name, f.stem) or f.stem.startswith(n + "_") or f.stem.split("_")[0] == n]
            if not hit:
                raise DataError(f"option {option}: no file '{n}' (files: {', '.join(f.name for f in files)})")
            out.update(hit)
        return out

    def rows(self, path: Path, options: dict):
        files, ignored = self._files(path)
        if not files:
            raise DataError(f"{path}: no 'sentence<TAB>label' lines found (expected one sentence and its label per line)")
        if options.get("files"):
            files = [f for f in files if f in self._pick(files, options["files"], "files")]
        test = self._pick(files, options.get("test_files"), "test_files")
        val = self._pick(files, options.get("val_files"), "val_files")
        split_given = bool(test or val)
        rows, skipped = [], []
        warnings = [f"{f.name}: not 'sentence<TAB>label' lines: ignored" for f in ignored]
        for f in files:
            split = "test" if f in test else "val" if f in val else ("train" if split_given else None)
            lines = _lines(_read_text_file(f))
            layout = detect_layout(lines, options.get("label_column"), options.get("header"))
            if layout.label_first or layout.header:
                warnings.append(f"{f.name}: read as {layout.columns}{' after a header line' if layout.header else ''} "
                                f"({layout.why})")
            first = next((n for n, ln in enumerate(lines, 1) if ln.strip()), 0)
            for n, line in enumerate(lines, 1):
                if not line.strip() or (layout.header and n == first):
                    continue
                where = f"{f.name}:{n}"
                if "\t" not in line:
                    skipped.append(Skipped(where, "no tab between the sentence and its label"))
                    continue
                text, label = layout.split(line)
                rows.append(Row(where, text, label, split, {"file": f.stem, "fields": {"source": f.stem}}))
        return rows, skipped, warnings


def text_readers() -> list[TextReader]:
    return [JsonlTextReader(), TextTableReader(), UciTextReader()]


@hookimpl
def tlstudio_dataset_readers():
    return text_readers()
