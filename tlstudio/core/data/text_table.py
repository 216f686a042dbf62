"""A text data set as the studio holds it: rows (text, label, split, where), validated once
(empty, too long, unknown or ambiguous labels, duplicates, texts with several labels), with
the report of what was kept and skipped and why."""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import stable_hash
from .report import SHOWN_SKIPPED, Item, Skipped, ValidationReport
from .sanity import label_problem
from .table import DatasetReader, natural_key
from .tabbed import swapped_hint

TASK = "text-classification"
FEW_TEXTS = 10
IMBALANCE = 10.0
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test"}



# --- report -------------------------------------------------------------------------------------
@dataclass
class TextReport(ValidationReport):
    """The validation report of a text data set (the image report's fields, in words of texts)."""

    lengths: dict = field(default_factory=dict)  # words per text: min, max, mean, median, p95

    def summary(self) -> str:
        k = len(self.counts)
        lines = [f"{self.total:,} usable texts in {k} class{'es' if k != 1 else ''} (read from {self.source} as {self.reader})."]
        lines += [f"  {name}: {n:,}" for name, n in self.counts.items()]
        for split, per_class in self.split_counts.items():
            lines.append(f"  {split}: {sum(per_class.values()):,} (" + ", ".join(f"{c} {n}" for c, n in per_class.items()) + ")")
        if self.skipped:
            reasons = Counter(_reason_kind(s.reason) for s in self.skipped)
            lines.append(f"Skipped {len(self.skipped):,} (not used): " + ", ".join(f"{r} {n}" for r, n in reasons.most_common()))
            lines += [f"  {s.ref}: {s.reason}" for s in self.skipped[:SHOWN_SKIPPED]]
            if len(self.skipped) > SHOWN_SKIPPED:
                lines.append(f"  ... and {len(self.skipped) - SHOWN_SKIPPED:,} more")
        if self.duplicates:
            n = sum(len(g) for g in self.duplicates)
            lines.append(f"Duplicates: {len(self.duplicates):,} texts occur more than once ({n:,} rows), "
                         f"e.g. {' = '.join(self.duplicates[0][:3])}")
        if self.lengths:
            s = self.lengths
            lines.append(f"Length: {s['min_words']} to {s['max_words']} words per text (mean {s['mean_words']:.1f}, "
                         f"95% have at most {s['p95_words']})")
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    for key in ("empty text", "no label", "unknown label", "duplicate", "different label", "unknown split",
                "JSON", "no tab"):
        if key in reason:
            return key
    return "other"


# --- the table ----------------------------------------------------------------------------------
class TextTable:
    """The usable texts a reader found, their classes, and the validation report.

    Items are :class:`Item` with the text in ``meta["text"]``; ``ref`` is ``file:line``."""

    def __init__(self, reader: DatasetReader, source: Path, items: list[Item], class_names: list[str],
                 report: TextReport, options: dict | None = None):
        self.reader, self.reader_id = reader, reader.id
        self.source, self.items, self.class_names = Path(source), items, class_names
        self.report, self.options = report, dict(options or {})
        self._index = {c: i for i, c in enumerate(class_names)}

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"<TextTable {self.reader_id} {self.source}: {len(self)} texts, classes {self.class_names}>"

    @property
    def has_given_split(self) -> bool:
        return bool(self.items) and all(it.split for it in self.items)

    def labels(self) -> np.ndarray:
        return np.array([self._index.get(it.label, -1) for it in self.items], dtype=np.int64)

    def texts(self) -> list[str]:
        return [it.meta["text"] for it in self.items]

    def preview(self, per_class: int = 5, seed: int = 0) -> dict[str, list[str]]:
        """A few texts of each class, drawn at random (seeded): the Data page's preview."""
        rng = np.random.default_rng(seed)
        out = {}
        for c in self.class_names:
            texts = [it.meta["text"] for it in self.items if it.label == c]
            out[c] = [texts[i] for i in sorted(rng.permutation(len(texts))[:per_class])]
        return out

    def fingerprint(self) -> str:
        """Changes when a text, a label, a split or an option changes."""
        return stable_hash(self.reader_id, self.options, [(it.ref, it.label, it.split, it.meta["text"]) for it in self.items])


# --- option helpers -------------------------------------------------------------------------------
# --- rows -> validated table ----------------------------------------------------------------------
@dataclass
class Row:
    """One record as read: where it came from, its text, raw label and raw split."""

    where: str  # "file.csv:12"
    text: str | None
    label: str | None
    split: str | None = None
    meta: dict = field(default_factory=dict)


def _clean(s) -> str:
    return "" if s is None else str(s).strip()


def _dup_key(text: str) -> str:
    return " ".join(text.split()).casefold()


def validate_rows(reader: DatasetReader, source: Path, rows: list[Row], options: dict,
                  skipped: list[Skipped] | None = None, warnings: list[str] | None = None) -> TextTable:
    """Turn raw rows into a :class:`TextTable`: empty texts, missing and unknown labels, unknown
    splits and duplicates are skipped and reported (nothing is lost silently)."""
    skipped = list(skipped or [])
    warnings = list(warnings or [])
    hint = swapped_hint([_clean(r.text) for r in rows], [_clean(r.label) for r in rows], reader.swap_advice)
    if hint:
        warnings.insert(0, f"{source}: {hint}")
    names = _label_names(options.get("label_names"))
    classes = _as_list(options.get("classes"))
    mode = str(options.get("duplicates") or "drop").lower()
    if mode not in ("drop", "keep"):
        raise DataError(f"option duplicates: expected drop or keep, got {options.get('duplicates')!r}")

    items: list[Item] = []
    for r in rows:
        text, raw_label, raw_split = _clean(r.text), _clean(r.label), _clean(r.split)
        label = names.get(raw_label, raw_label)
        split = SPLIT_NAMES.get(raw_split.lower()) if raw_split else None
        if not text:
            problem = "empty text"
        elif not raw_label:
            problem = "no label"
        elif label_problem(label):
            problem = label_problem(label)
        elif classes and label not in classes:
            problem = f"unknown label '{label}' (known: {', '.join(classes)})"
        elif raw_split and not split:
            problem = f"unknown split '{raw_split}' (expected train, val or test)"
        else:
            items.append(Item(r.where, label, split, {"text": text, **r.meta}))
            continue
        skipped.append(Skipped(r.where, problem))

    # duplicates (same words, ignoring case and spacing)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        groups[_dup_key(it.meta["text"])].append(i)
    dup_groups = [g for g in groups.values() if len(g) > 1]
    conflicts = [g for g in dup_groups if len({items[i].label for i in g}) > 1]
    if conflicts:
        eg = "; ".join(f"{items[i].ref} ({items[i].label})" for i in conflicts[0][:3])
        warnings.append(f"{len(conflicts):,} text{'s' if len(conflicts) != 1 else ''} occur with different labels, e.g. {eg}"
                        + (": all their copies are skipped" if mode == "drop" else ""))
    if mode == "drop":
        drop: set[int] = set()
        for g in dup_groups:
            first = items[g[0]]
            if g in conflicts:
                for i in g:
                    others = ", ".join(f"{items[j].ref} ({items[j].label})" for j in g if j != i)[:200]
                    skipped.append(Skipped(items[i].ref, f"same text with a different label at {others}"))
                drop.update(g)
            else:
                for i in g[1:]:
                    skipped.append(Skipped(items[i].ref, f"duplicate of {first.ref}"))
                drop.update(g[1:])
        dup_refs = [[items[i].ref for i in g] for g in dup_groups]
        items = [it for i, it in enumerate(items) if i not in drop]
    else:
        dup_refs = [[items[i].ref for i in g] for g in dup_groups]

    # labels that never occur in the training split cannot be learned
    train_labels = {it.label for it in items if it.split == "train"}
    if train_labels:
        unseen = [it for it in items if it.split in ("val", "test") and it.label not in train_labels]
        skipped += [Skipped(it.ref, f"unknown label '{it.label}': it never occurs in the training split")
                    for it in unseen]
        gone = {id(it) for it in unseen}
        items = [it for it in items if id(it) not in gone]

    found = Counter(it.label for it in items)
    wanted = classes or sorted(found, key=natural_key)
    for c in wanted:
        if not found.get(c):
            warnings.append(f"class '{c}' has no usable texts: left out")
    class_names = [c for c in wanted if found.get(c)]
    class_names += sorted(set(found) - set(class_names), key=natural_key)
    counts = {c: found[c] for c in class_names}
    warnings += _class_warnings(counts)
    words = np.array([len(it.meta["text"].split()) for it in items]) if items else np.zeros(0)
    lengths = ({"min_words": int(words.min()), "max_words": int(words.max()), "mean_words": round(float(words.mean()), 1),
                "median_words": int(np.median(words)), "p95_words": int(np.percentile(words, 95))} if len(words) else {})
    report = TextReport(source=str(source), reader=reader.id, counts=counts, skipped=skipped, duplicates=dup_refs,
                        warnings=warnings, lengths=lengths)
    return TextTable(reader, source, items, class_names, report, options)


def _class_warnings(counts: dict[str, int]) -> list[str]:
    out = []
    if len(counts) == 1:
        out.append(f"only one class ('{next(iter(counts))}'): at least two are needed to train")
    out += [f"class '{c}' has only {n} text{'s' if n != 1 else ''}" for c, n in counts.items() if n < FEW_TEXTS]
    if len(counts) > 1:
        big, small = max(counts, key=counts.get), min(counts, key=counts.get)
        if counts[big] >= IMBALANCE * counts[small]:
            out.append(f"classes are imbalanced: '{big}' has {counts[big]:,} texts, '{small}' {counts[small]:,} "
                       "(consider class balance in the training settings)")
    return out


def check_trainable_texts(table: TextTable) -> None:
    """Raise :class:`DataError` when the table cannot train a classifier."""
    where = table.source
    if not table.items:
        s = table.report.skipped
        extra = f" ({len(s):,} rows skipped, e.g. {s[0].reason})" if s else ""
        swapped = next((w for w in table.report.warnings if "look swapped" in w), None)
        raise DataError(f"no usable texts found in {where}{extra}" + (f". {swapped}" if swapped else ""))
    counts = table.report.counts
    if len(counts) < 2:
        raise DataError(f"only one class ('{next(iter(counts))}') found in {where}: at least two are needed")
    few = [f"'{c}' ({n})" for c, n in counts.items() if n < 2]
    if few:
        raise DataError(f"class{'es' if len(few) > 1 else ''} {', '.join(few)} in {where} "
                        f"{'have' if len(few) > 1 else 'has'} fewer than two texts: each class needs at least two")


def _as_list(value) -> list[str] | None:
    if value in (None, "", []):
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()] or None


def _label_names(value) -> dict[str, str]:
    if not value:
        return {}
    if isinstance(value, dict):
        return {str(k).strip(): str(v).strip() for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # index -> name
        return {str(i): str(v).strip() for i, v in enumerate(value)}
    out = {}
    for part in str(value).split(","):
        k, sep, v = part.partition("=")
        if not sep or not k.strip() or not v.strip():
            raise DataError(f"option label_names: expected raw=name pairs such as '0=negative,1=positive', got {value!r}")
        out[k.strip()] = v.strip()
    return out
