"""Train / validation / test splits: the source's own, or stratified and seeded; stored for re-runs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write_json
from .table import ImageTable

SPLITS = ("train", "val", "test")


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


def _share(n: int, fraction: float) -> int:
    """How many of ``n`` items a fraction asks for (at least one when the fraction is not zero)."""
    return max(1, int(round(n * fraction))) if fraction > 0 and n else 0


def make_split(table: ImageTable, mode: str, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """'train' / 'val' / 'test' per item.

    mode "given": the source's split (a missing val or test part is carved out of train,
    stratified); "stratified": a new stratified split; "auto": given when the source has
    one, else stratified.  The same table, fractions and seed always give the same split.
    Unlabelled items go to train.
    """
    if mode not in ("auto", "given", "stratified"):
        raise DataError(f"unknown split mode '{mode}' (known: auto, given, stratified)")
    if mode == "given" and not table.has_given_split:
        raise DataError(f"{table.source} carries no split of its own (for every image): "
                        "choose the split 'auto' or 'stratified'")
    given = mode == "given" or (mode == "auto" and table.has_given_split)
    labels = table.labels()
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
            out[_carve(pool, labels, _share(n_labelled, fraction), rng)] = part
    return out.tolist()


def split_counts(table: ImageTable, assignments: list[str]) -> dict[str, dict[str, int]]:
    """{split: {class: images}} for every split and class (zeros included)."""
    out = {s: dict.fromkeys(table.class_names, 0) for s in SPLITS}
    for item, s in zip(table.items, assignments):
        if item.label is not None and item.label in out.get(s, {}):
            out[s][item.label] += 1
    return out


def save_split(path: Path, table: ImageTable, assignments: list[str]) -> None:
    """Store the split (atomically) so that re-runs use the same one."""
    if len(assignments) != len(table):
        raise ValueError(f"{len(assignments)} split assignments for {len(table)} items")
    atomic_write_json(path, {"fingerprint": table.fingerprint(),
                             "refs": {it.ref: s for it, s in zip(table.items, assignments)}})


def load_split(path: Path, table: ImageTable) -> list[str] | None:
    """The stored split per item; None when the file is missing, damaged or does not cover
    every item of the table (the caller then makes a new split and says so)."""
    try:
        refs = json.loads(Path(path).read_text(encoding="utf-8"))["refs"]
        out = [refs[it.ref] for it in table.items]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return out if all(s in SPLITS for s in out) else None
