"""Items of a data set and the validation report a reader fills while it reads them."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

SHOWN_SKIPPED = 20  # the summary lists this many skipped files, then counts the rest


@dataclass
class Item:
    """One sample."""

    ref: str  # unique id: absolute file path, or e.g. "train/12" for NPZ rows
    label: str | None  # class name (None = unlabelled)
    split: str | None = None  # "train"/"val"/"test" when the source gives a split
    meta: dict = field(default_factory=dict)


@dataclass
class Skipped:
    """An item that cannot be used, and why (plain words)."""

    ref: str
    reason: str


@dataclass
class ValidationReport:
    source: str
    reader: str
    counts: dict[str, int] = field(default_factory=dict)  # usable items per class
    skipped: list[Skipped] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)  # refs with identical pixels
    sizes: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    split_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # filled by the caller
    unlabelled: int = 0  # usable items without a label (target-domain data)

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + self.unlabelled

    def summary(self) -> str:
        """A few lines for a person: what was found, what was skipped and why."""
        k = len(self.counts)
        head = f"{self.total:,} usable images in {k} class{'es' if k != 1 else ''}"
        if self.unlabelled:
            head += f" ({self.unlabelled:,} unlabelled)"
        lines = [f"{head} (read from {self.source} as {self.reader})."]
        lines += [f"  {name}: {n:,}" for name, n in self.counts.items()]
        for split, per_class in self.split_counts.items():
            lines.append(f"  {split}: {sum(per_class.values()):,} ("
                         + ", ".join(f"{c} {n}" for c, n in per_class.items()) + ")")
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped):,} (not used):")
            lines += [f"  {s.ref}: {s.reason}" for s in self.skipped[:SHOWN_SKIPPED]]
            if len(self.skipped) > SHOWN_SKIPPED:
                lines.append(f"  ... and {len(self.skipped) - SHOWN_SKIPPED:,} more")
        if self.duplicates:
            n = sum(len(g) for g in self.duplicates)
            lines.append(f"Duplicates: {len(self.duplicates):,} groups of identical images ({n:,} images), "
                         f"e.g. {' = '.join(self.duplicates[0][:3])}")
        s = self.sizes
        if s:
            modes = ", ".join(f"{m}: {n:,}" for m, n in s.get("modes", {}).items())
            lines.append(f"Sizes: {s['min_width']}x{s['min_height']} to {s['max_width']}x{s['max_height']} pixels "
                         f"(mean {s['mean_width']:.0f}x{s['mean_height']:.0f}); pixel formats: {modes}")
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ValidationReport":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["skipped"] = [s if isinstance(s, Skipped) else Skipped(**s) for s in kw.get("skipped", [])]
        return cls(**kw)
