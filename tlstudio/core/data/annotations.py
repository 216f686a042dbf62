"""Images with annotations (boxes for detection, sentences for captioning): the table a
detection or captioning reader returns, its validation report, and the checks every read
goes through (each image decoded once; unusable images and annotations listed with their
reason and skipped; duplicates and sizes reported)."""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import stable_hash
from ..tasks.traits import ANNOTATION_KINDS, AnnotationKind
from .image import read_file
from .report import SHOWN_SKIPPED, Item, Skipped, ValidationReport
from .table import DatasetReader, ImageTable, Progress, Scan, ShouldStop, _probe, _sizes, natural_key, parallel_map


@dataclass
class AnnotationReport(ValidationReport):
    """The validation report of annotated images.  ``counts`` holds boxes per class
    (annotations with classes); ``annotations`` the usable boxes or captions in all."""

    task: str = "detection"
    annotation: str = "box"  # what the images carry (:data:`~tlstudio.core.tasks.traits.ANNOTATION_KINDS`)
    images: int = 0
    annotations: int = 0
    empty_images: int = 0  # usable images without any box (negatives) or caption

    @property
    def total(self) -> int:
        return self.images

    @property
    def kind(self) -> AnnotationKind:
        return ANNOTATION_KINDS[self.annotation]

    @property
    def noun(self) -> str:
        return self.kind.plural

    def summary(self) -> str:
        kind = self.kind
        head = (f"{self.images:,} usable images with {self.annotations:,} {self.noun}"
                + (f" in {len(self.counts)} classes" if kind.classes else "")
                + f" (read from {self.source} as {self.reader}).")
        lines = [head]
        if kind.classes:
            lines += [f"  {name}: {n:,} {kind.plural}" for name, n in self.counts.items()]
        if kind.empty_use and self.empty_images:
            lines.append(f"  {self.empty_images:,} images have no {kind.name} (used as {kind.empty_use})")
        for split, n in self.split_counts.items():
            lines.append(f"  {split}: {sum(n.values()) if isinstance(n, dict) else n:,} images")
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped):,} (not used):")
            lines += [f"  {s.ref}: {s.reason}" for s in self.skipped[:SHOWN_SKIPPED]]
            if len(self.skipped) > SHOWN_SKIPPED:
                lines.append(f"  ... and {len(self.skipped) - SHOWN_SKIPPED:,} more")
        if self.duplicates:
            lines.append(f"Duplicates: {len(self.duplicates):,} groups of identical images, "
                         f"e.g. {' = '.join(self.duplicates[0][:3])}")
        s = self.sizes
        if s:
            lines.append(f"Sizes: {s['min_width']}x{s['min_height']} to {s['max_width']}x{s['max_height']} pixels "
                         f"(mean {s['mean_width']:.0f}x{s['mean_height']:.0f})")
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n".join(lines)


class AnnotatedTable(ImageTable):
    """Usable images of a detection or captioning source.  Each item's ``meta`` holds its
    annotations (``boxes``/``labels`` in image pixels, or ``captions``) and the decoded
    image's ``width`` and ``height``."""

    task = "detection"

    def labels(self) -> np.ndarray:
        """One stratum for every image: splits of annotated images are plain random ones."""
        return np.zeros(len(self.items), dtype=np.int64)

    def annotation(self, i: int) -> dict:
        m = self.items[i].meta
        return {k: m[k] for k in ("boxes", "labels", "captions") if k in m}

    def fingerprint(self) -> str:
        """Changes when an image, an annotation or the options change."""
        return stable_hash(self.reader_id, self.task, self.options,
                           [(it.ref, self.reader.stamp(it), self.annotation(i)) for i, it in enumerate(self.items)])


class AnnotatedReader(DatasetReader):
    """Base of detection and captioning readers: ``scan`` lists images (``Item``s whose
    ``meta`` holds raw annotations, each with a ``where`` for messages); ``check`` keeps
    the annotations of one decoded image that are usable and says why the others are not.
    ``annotation`` says what the images carry (a key of
    :data:`~tlstudio.core.tasks.traits.ANNOTATION_KINDS`: "box", "caption")."""

    task = "detection"
    annotation = "box"

    def load_image(self, item: Item) -> np.ndarray:
        return read_file(item.ref)[0]

    def decode(self, item: Item) -> tuple[np.ndarray, str]:
        return read_file(item.ref)

    def check(self, item: Item, width: int, height: int) -> list[Skipped]:
        """Keep the usable annotations of ``item`` (in place); return the skipped ones."""
        return []

    def read(self, path: Path, options: dict | None = None, progress: Progress = None,
             should_stop: ShouldStop = None) -> AnnotatedTable:
        path, options = Path(path), dict(options or {})
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        scan = self.scan(path, options)
        unknown = sorted(set(options) - set(self.options_help)) if self.options_help else []
        if unknown:
            scan.warnings.insert(0, f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                                    f"for the {self.id} reader (known: {', '.join(self.options_help)}): ignored")
        return validate_annotated(self, path, scan, options, progress, should_stop)


def validate_annotated(reader: AnnotatedReader, source: Path, scan: Scan, options: dict, progress: Progress = None,
                       should_stop: ShouldStop = None) -> AnnotatedTable:
    """Decode every scanned image (thread pool), check its annotations against its size,
    drop what cannot be used, and write the report."""
    task, kind = reader.task, ANNOTATION_KINDS[reader.annotation]
    probes = list(parallel_map(lambda it: _probe(reader, it), scan.items, progress, should_stop))
    items, ok, skipped = [], [], list(scan.skipped)
    empty = 0
    for item, probe in zip(scan.items, probes):
        where = item.meta.get("where")
        if isinstance(probe, str):
            skipped.append(Skipped(item.ref, f"{where}: {probe}" if where else probe))
            continue
        w, h = probe[0], probe[1]
        item.meta["width"], item.meta["height"] = int(w), int(h)
        had = len(item.meta.get(kind.plural, []))
        skipped += reader.check(item, w, h)
        left = len(item.meta.get(kind.plural, []))
        if not kind.empty_use and not left:
            skipped.append(Skipped(item.ref, f"no usable {kind.name}" + (" (all were skipped)" if had else "")))
            continue
        if kind.empty_use and had and not left:
            skipped.append(Skipped(item.ref, f"none of this image's {kind.plural} is usable: image left out "
                                             f"(it would teach that its objects are background)"))
            continue
        empty += not left
        item.meta.pop("where", None)
        items.append(item)
        ok.append(probe)

    warnings = list(scan.warnings)
    class_names: list[str] = []
    counts: dict[str, int] = {}
    if kind.classes:
        found = Counter(lab for it in items for lab in it.meta.get("labels", []))
        wanted = scan.class_names or sorted(found, key=natural_key)
        for c in wanted:
            if not found.get(c):
                warnings.append(f"class '{c}' has no usable {kind.name}: left out")
        class_names = [c for c in wanted if found.get(c)]
        counts = {c: found[c] for c in class_names}
        few = [c for c, n in counts.items() if n < 5]
        if few:
            warnings.append(f"class{'es' if len(few) > 1 else ''} {', '.join(repr(c) for c in few)} "
                            f"{'have' if len(few) > 1 else 'has'} fewer than 5 {kind.plural}")
        if items and empty == len(items):
            warnings.append(f"no image has a {kind.name}: a {task} model needs {kind.plural} to learn from")
    n_ann = sum(len(it.meta.get(kind.plural, [])) for it in items)

    groups: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(ok):
        groups[p[3]].append(i)
    dups = [[items[i].ref for i in g] for g in groups.values() if len(g) > 1]
    report = AnnotationReport(source=str(source), reader=reader.id, counts=counts, skipped=skipped, duplicates=dups,
                              sizes=_sizes(ok), warnings=warnings, task=task, annotation=kind.name, images=len(items),
                              annotations=n_ann, empty_images=empty)
    table = AnnotatedTable(reader, source, items, class_names, report, options)
    table.task = task
    return table


def check_annotated(table: AnnotatedTable) -> None:
    """Raise :class:`DataError` when the table cannot train a detector / captioner."""
    if not table.items:
        reasons = table.report.skipped
        extra = f" ({len(reasons):,} skipped, e.g. {reasons[0].ref}: {reasons[0].reason})" if reasons else ""
        raise DataError(f"no usable annotated images found in {table.source}{extra}")
    kind = table.report.kind
    if kind.classes and not table.class_names:
        raise DataError(f"no usable {kind.name} found in {table.source}: a {table.task} model needs labelled "
                        f"{kind.plural}")
    if len(table.items) < 3:
        raise DataError(f"only {len(table.items)} usable image(s) in {table.source}: at least 3 are needed "
                        "(training, validation and test)")


# --- helpers shared by the readers ---------------------------------------------------------------------
def resolve_image(name: str, roots: list[Path]) -> Path | None:
    """The first existing file ``root/name`` (slashes of either kind); None when none exists."""
    name = name.strip().replace("\\", "/") if os.sep == "/" else name.strip()
    p = Path(name).expanduser()
    if p.is_absolute():
        return p if p.is_file() else None
    for r in roots:
        if (r / p).is_file():
            return r / p
    return None


def image_roots(path: Path, options: dict) -> list[Path]:
    """Where image names of an annotation file are looked up: the ``root`` option, else the
    file's folder and its ``images`` sub-folder."""
    base = path.parent if path.is_file() else path
    if options.get("root"):
        return [(base / Path(str(options["root"])).expanduser())]
    return [base, base / "images"]


def number(value, what: str) -> float:
    """A finite float from a cell / JSON value, else ValueError naming ``what``."""
    try:
        v = float(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError(f"{what} is not a number ({value!r})") from None
    if not np.isfinite(v):
        raise ValueError(f"{what} is not a finite number ({value!r})")
    return v


def names_option(value) -> list[str] | None:
    if not value:
        return None
    names = value.split(",") if isinstance(value, str) else value
    return [str(n).strip() for n in names if str(n).strip()] or None

