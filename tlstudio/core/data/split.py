"""Train / validation / test splits: the source's own, or stratified and seeded; by patient
where the data names patients; stored for re-runs, relative to the data source.

Items that carry a group (``item.meta["group"]``: a CSV/JSONL patient column, the DICOM
PatientID) are split by group with scikit-learn's StratifiedGroupKFold: every image of a
patient lies in one split, and the classes stay as balanced as the groups allow.

A stored split (``split.json``) names items relative to their data source (a project moved
to another computer keeps its split) and records the groups.  :func:`check_split` says
whether a stored split still matches the data; the callers never rewrite it silently.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write_json
from .table import ImageTable

SPLITS = ("train", "val", "test")
SPLIT_FORMAT = 2


class SplitChangedError(DataError):
    """A stored split no longer matches the data: the user chooses whether to make a new one."""


#: fewer named groups than this cannot be split by group (anonymised DICOM often has one PatientID for all)
MIN_GROUPS = 3


def item_groups(table) -> list[str] | None:
    """The group (patient) of every item, or None when no item names one; an item without a
    group is a group of its own."""
    groups = [it.meta.get("group") for it in table.items]
    if not any(g not in (None, "") for g in groups):
        return None
    return [str(g) if g not in (None, "") else f"\0{it.ref}" for g, it in zip(groups, table.items)]


def split_groups(table) -> list[str] | None:
    """The groups a split keeps together: :func:`item_groups`, unless fewer than ``MIN_GROUPS``
    are named (then images are split one by one, and :func:`group_summary` says so)."""
    groups = item_groups(table)
    if groups is None or len({g for g in groups if not g.startswith("\0")}) < MIN_GROUPS:
        return None
    return groups


def _carve(pool: np.ndarray, labels: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """``total`` indices drawn from ``pool``, stratified: each class gives its share to within one
    item (largest remainders round up), and keeps at least one item in the pool."""
    if total <= 0 or not len(pool):
        return np.empty(0, np.int64)
    classes, counts = np.unique(labels[pool], return_counts=True)
    ideal = counts * (min(total, len(pool)) / len(pool))
    take = np.floor(ideal).astype(np.int64)
    order = np.lexsort((rng.random(len(classes)), take - ideal))  # largest remainder first, ties at random
    take[order[: int(round(ideal.sum())) - int(take.sum())]] += 1
    take = np.minimum(take, counts - 1)
    return np.concatenate([rng.permutation(pool[labels[pool] == c])[:t] for c, t in zip(classes, take)])


def _carve_groups(pool: np.ndarray, labels: np.ndarray, groups: np.ndarray, total: int, seed: int) -> np.ndarray:
    """About ``total`` indices of ``pool`` made of whole groups, stratified by class
    (StratifiedGroupKFold: the first fold of round(len(pool) / total))."""
    if total <= 0 or not len(pool):
        return np.empty(0, np.int64)
    n_groups = len(np.unique(groups[pool]))
    k = min(n_groups, max(2, int(round(len(pool) / total))))
    if k < 2:
        return np.empty(0, np.int64)
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=int(seed) % (2**32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the least populated class has only n members": groups decide
        _, held = next(sgkf.split(np.zeros(len(pool)), labels[pool], groups[pool]))
    return pool[held]


def _share(n: int, fraction: float) -> int:
    """How many of ``n`` items a fraction asks for (at least one when the fraction is not zero)."""
    return max(1, int(round(n * fraction))) if fraction > 0 and n else 0


def make_split(table: ImageTable, mode: str, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """'train' / 'val' / 'test' per item.

    mode "given": the source's split (a missing val or test part is carved out of train,
    stratified); "stratified": a new stratified split; "auto": given when the source has
    one, else stratified.  Items with groups (patients) are split by group.  The same table,
    fractions and seed always give the same split.  Unlabelled items go to train.
    """
    if mode not in ("auto", "given", "stratified"):
        raise DataError(f"unknown split mode '{mode}' (known: auto, given, stratified)")
    if mode == "given" and not table.has_given_split:
        raise DataError(f"{table.source} carries no split of its own (for every image): "
                        "choose the split 'auto' or 'stratified'")
    given = mode == "given" or (mode == "auto" and table.has_given_split)
    labels = table.labels()
    groups = split_groups(table)
    garr = np.asarray(groups, dtype=object) if groups is not None else None
    rng = np.random.default_rng(seed)
    n_labelled = int((labels >= 0).sum())
    if given:
        out = np.array([it.split for it in table.items], dtype=object)
        out[labels < 0] = "train"
        if not (out == "train").any():
            raise DataError(f"the split given by {table.source} has no training images")
    else:
        out = np.full(len(table), "train", dtype=object)
    for part, fraction in (("test", test_fraction), ("val", val_fraction)):
        if not (out == part).any():
            pool = np.flatnonzero((out == "train") & (labels >= 0))
            total = _share(n_labelled, fraction)
            picked = (_carve_groups(pool, labels, garr, total, seed + (part == "val")) if garr is not None
                      else _carve(pool, labels, total, rng))
            if garr is not None and len(picked):  # whole groups: their unlabelled items too
                picked = np.flatnonzero(np.isin(garr, garr[picked]) & (out == "train"))
            out[picked] = part
    return out.tolist()


def split_counts(table: ImageTable, assignments: list[str]) -> dict[str, dict[str, int]]:
    """{split: {class: images}} for every split and class (zeros included)."""
    out = {s: dict.fromkeys(table.class_names, 0) for s in SPLITS}
    for item, s in zip(table.items, assignments):
        if item.label is not None and item.label in out.get(s, {}):
            out[s][item.label] += 1
    return out


def group_summary(table, assignments: list[str] | None = None) -> dict | None:
    """Groups (patients) of the table: how many, items per group, and the groups that lie in
    more than one split (a leak) when ``assignments`` is given; None without groups."""
    groups = item_groups(table)
    if groups is None:
        return None
    named = [g for g in groups if not g.startswith("\0")]
    sizes: dict[str, int] = {}
    for g in named:
        sizes[g] = sizes.get(g, 0) + 1
    per = np.array(list(sizes.values()))
    out = {"groups": len(sizes), "items_with_group": len(named), "items_without_group": len(groups) - len(named),
           "per_group": {"min": int(per.min()), "median": float(np.median(per)), "max": int(per.max()),
                         "mean": round(float(per.mean()), 2)},
           "split_by_group": len(sizes) >= MIN_GROUPS}
    if assignments is not None and not out["split_by_group"]:
        out["leaking"], out["leaking_items"] = [], 0  # too few patients named (anonymised?): split image by image
    elif assignments is not None:
        where: dict[str, set] = {}
        for g, s in zip(groups, assignments):
            if not g.startswith("\0"):
                where.setdefault(g, set()).add(s)
        leaking = sorted(g for g, s in where.items() if len(s) > 1)
        out["leaking"] = leaking
        out["leaking_items"] = sum(sizes[g] for g in leaking)
    return out


# --- stored splits -----------------------------------------------------------------------------
def _base(table) -> Path:
    src = Path(table.source)
    return src if src.is_dir() else src.parent


def relative_ref(ref: str, base: Path) -> str:
    """``ref`` relative to the data source's folder (POSIX slashes) when it lies inside it."""
    if not os.path.isabs(ref):
        return ref
    try:
        rel = os.path.relpath(ref, base)
    except ValueError:  # another drive (Windows)
        return ref
    return ref if rel.startswith("..") else Path(rel).as_posix()


def save_split(path: Path, table: ImageTable, assignments: list[str]) -> None:
    """Store the split (atomically) so that re-runs use the same one: items relative to the
    data source, and the group of each group (patient) where the data has them."""
    if len(assignments) != len(table):
        raise ValueError(f"{len(assignments)} split assignments for {len(table)} items")
    base = _base(table)
    data = {"format": SPLIT_FORMAT, "fingerprint": table.fingerprint(), "source": Path(table.source).name,
            "refs": {relative_ref(it.ref, base): s for it, s in zip(table.items, assignments)}}
    groups = split_groups(table)
    if groups is not None:
        data["groups"] = {g: s for g, s in sorted(zip(groups, assignments)) if not g.startswith("\0")}
    atomic_write_json(path, data)


@dataclass
class SplitCheck:
    """A stored split against today's data."""

    path: Path
    readable: bool = True
    assignments: list[str] | None = None  # per item, when every item is in the file
    missing: list[str] = field(default_factory=list)  # items of the data the file does not name
    gone: int = 0  # items of the file no longer in the data
    leaking_groups: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return self.assignments is not None and not self.gone

    def message(self) -> str:
        if not self.readable:
            return f"The stored split {self.path} cannot be read (damaged or not a split file)."
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing):,} item(s) of the data are not in it (e.g. {self.missing[0]})")
        if self.gone:
            parts.append(f"{self.gone:,} of its items are no longer in the data")
        return (f"The stored split {self.path} was made for other data: " + "; ".join(parts) + ". "
                "The data changed since the split was made; a new split moves images between training and "
                "test, so earlier results are no longer comparable.")


def check_split(path: Path, table) -> SplitCheck:
    """Does the stored split at ``path`` cover exactly the items of ``table``?  Items are
    matched by their path relative to the data source (or, in files written before, the
    absolute path)."""
    chk = SplitCheck(Path(path))
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        refs = data["refs"]
        if not isinstance(refs, dict) or not all(s in SPLITS for s in refs.values()):
            raise ValueError("bad refs")
    except (OSError, ValueError, KeyError, TypeError):
        chk.readable = False
        return chk
    base = _base(table)
    out, used = [], set()
    for it in table.items:
        key = relative_ref(it.ref, base)
        if key in refs:
            out.append(refs[key])
            used.add(key)
        elif it.ref in refs:
            out.append(refs[it.ref])
            used.add(it.ref)
        else:
            chk.missing.append(key)
    chk.gone = len(set(refs) - used)
    if not chk.missing:
        chk.assignments = out
        gs = group_summary(table, out)
        chk.leaking_groups = list(gs["leaking"]) if gs else []
    return chk


def load_split(path: Path, table: ImageTable) -> list[str] | None:
    """The stored split per item; None when the file is missing, damaged or does not cover
    exactly the items of the table (see :func:`check_split` for why)."""
    chk = check_split(path, table)
    return chk.assignments if chk.matches else None


def archive_split(path: Path) -> Path | None:
    """Move a stored split aside (``split.json`` -> ``split.json.old-1``) so that a new one is
    made; the old one is kept, never deleted.  Returns where it went."""
    path = Path(path)
    if not path.exists():
        return None
    n = 1
    while path.with_name(f"{path.name}.old-{n}").exists():
        n += 1
    dest = path.with_name(f"{path.name}.old-{n}")
    path.rename(dest)
    return dest
