"""The Data page's right side: what the read found (counts, skipped items and why, the split
chart), thumbnails per class (texts per class for text, annotated examples for boxes and
captions) and the augmentation preview.  A mixin of :class:`tlstudio.gui.pages.data.DataPage`:
its methods use the page's widgets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QTableWidgetItem

from tlstudio.core.tasks.traits import ANNOTATION_KINDS

from ..taskdata import annotated_examples, table_kind, text_preview
from ..widgets import ThumbStrip, clear_layout, heading, pixmap_from_array, plural, thumbnail

THUMBS_PER_CLASS = 8
PREVIEW_IMAGES = 6
PREVIEW_DRAWS = 2
SPLIT_COLORS = {"train": "#0072B2", "val": "#E69F00", "test": "#009E73"}


def class_thumbnails(table, per_class: int = THUMBS_PER_CLASS, size: int = 72) -> dict[str, list[tuple[str, np.ndarray]]]:
    out: dict[str, list] = {c: [] for c in table.class_names}
    for i, it in enumerate(table.items):
        lst = out.get(it.label)
        if lst is None or len(lst) >= per_class:
            continue
        try:
            lst.append((it.ref, thumbnail(table.load_image(i), size)))
        except Exception:  # noqa: BLE001 - shown as missing, the report already names bad files
            continue
    return out


def preview_indices(table, n: int = PREVIEW_IMAGES) -> list[int]:
    """One image per class in turn (the same images every time)."""
    by: dict[str, list[int]] = {}
    for i, it in enumerate(table.items):
        by.setdefault(it.label or "", []).append(i)
    picks, k = [], 0
    while len(picks) < min(n, len(table.items)):
        for lst in by.values():
            if k < len(lst) and len(picks) < n:
                picks.append(lst[k])
        k += 1
    return picks


def skipped_reasons(skipped, kind: str) -> list[tuple[str, int]]:
    """The reasons rows were skipped, grouped ("empty text 2, unknown label 1, duplicate 3")."""
    from collections import Counter

    keys = {"text": ("empty text", "no label", "unknown label", "unknown split", "different label", "duplicate",
                     "JSON", "no tab"),
            "box": ("outside the image", "zero-area", "negative size", "unknown label", "empty label",
                    "crowd", "not a number", "not found", "cannot"),
            "caption": ("empty caption", "no words", "not found", "cannot")}.get(kind)
    if not keys:
        return []
    c = Counter(next((k for k in keys if k in s.reason), "other") for s in skipped)
    return c.most_common()


class DataReport:
    """The report, thumbnails and preview of the Data page (see the module docstring)."""

    def _show_report(self) -> None:
        t = self.table
        if t is None:
            return
        r = t.report
        k = len(r.counts)
        kind = table_kind(t)
        noun = "texts" if kind == "text" else "images"
        annotated = ANNOTATION_KINDS.get(kind)
        if annotated:
            lines = [f"<b>{r.images:,} usable images with {r.annotations:,} {r.noun}</b>"
                     + (f" in {k} class{'es' if k != 1 else ''}" if annotated.classes else "")
                     + f" (read from {r.source} as <i>{r.reader}</i>)."]
            if annotated.classes and r.counts:
                lines.append(f"{annotated.plural.capitalize()} per class: "
                             + ", ".join(f"{c} {n:,}" for c, n in r.counts.items()) + ".")
            if getattr(r, "empty_images", 0):
                lines.append(f"{r.empty_images:,} images have no {annotated.name}"
                             + (f" (used as {annotated.empty_use})." if annotated.empty_use else "."))
        else:
            lines = [f"<b>{plural(r.total, 'usable ' + noun[:-1], 'usable ' + noun)} in {plural(k, 'class', 'classes')}</b> "
                     f"(read from {r.source} as <i>{r.reader}</i>)."]
        if kind == "text" and r.counts:
            lines.append("Texts per class: " + ", ".join(f"{c} {n:,}" for c, n in r.counts.items()) + ".")
        if r.unlabelled and kind == "image":
            lines.append(f"{r.unlabelled:,} images carry no label.")
        lengths = getattr(r, "lengths", None)
        if lengths:
            lines.append(f"Length: {lengths['min_words']} to {lengths['max_words']} words per text "
                         f"(mean {lengths['mean_words']:.1f}; 95% have at most {lengths['p95_words']}).")
        s = r.sizes
        if s:
            modes = ", ".join(f"{m} {n:,}" for m, n in s.get("modes", {}).items())
            lines.append(f"Sizes {s['min_width']}×{s['min_height']} to {s['max_width']}×{s['max_height']} pixels; "
                         f"pixel formats: {modes}.")
        if annotated:
            counts = None  # the chart shows boxes per class; the split is of images
            per_split = self.image_split_counts()
            if per_split:
                lines.append("Split: " + ", ".join(f"{sp} {n:,}" for sp, n in per_split.items()) + " images.")
        else:
            counts = self.split_counts()
            if counts:
                lines.append("Split: " + ", ".join(f"{sp} {sum(c.values()):,}" for sp, c in counts.items()) + ".")
        if r.skipped:
            what = (("row", "rows") if kind == "text" else ("file", "files") if not annotated
                    else (f"{'annotation' if annotated.classes else annotated.name} or image",
                          f"{'annotations' if annotated.classes else annotated.plural} or images"))
            reasons = skipped_reasons(r.skipped, kind)
            lines.append(f"<span style='color:#b03a2e'>{plural(len(r.skipped), *what)} skipped</span>"
                         + (f" ({', '.join(f'{why} {n:,}' for why, n in reasons)})" if reasons else "")
                         + " — see the Skipped tab.")
        if r.duplicates:
            lines.append(f"{plural(len(r.duplicates), 'group')} of identical {noun}.")
        self.summary.setText("<br>".join(lines))
        self.warnings.setText("\n".join(f"⚠ {w}" for w in r.warnings))
        self.skipped.setHorizontalHeaderLabels(["Row" if kind == "text" else "File", "Why it was skipped"])
        self.skipped.setRowCount(len(r.skipped))
        for i, sk in enumerate(r.skipped):
            self.skipped.setItem(i, 0, QTableWidgetItem(sk.ref))
            self.skipped.setItem(i, 1, QTableWidgetItem(sk.reason))
        self.skipped.resizeColumnToContents(0)
        self.tabs.setTabText(1, f"Skipped ({len(r.skipped):,})")
        if t.class_names:
            self._draw_chart(counts)
        elif self.chart is not None:
            self.chart.clear()
            self.bar_items = []

    def _draw_chart(self, counts) -> None:
        from ..charts import styled_plot

        t = self.table
        if self.chart is None:
            self.chart = styled_plot("Per class and split", xlabel="class", ylabel="count")
            self.chart.getPlotItem().showGrid(x=False, y=True, alpha=0.25)
            self.chart.setObjectName("classChart")
            self.chart.setMinimumHeight(220)
            self.chart_box.addWidget(self.chart)
        import pyqtgraph as pg
        self.chart.clear()
        names = list(t.class_names)
        x = np.arange(len(names), dtype=float)
        bottom = np.zeros(len(names))
        self.bar_items = []
        parts = counts or {"all": dict(t.report.counts)}
        for split_name, per in parts.items():
            h = np.array([per.get(c, 0) for c in names], dtype=float)
            color = SPLIT_COLORS.get(split_name, "#0072B2")
            bar = pg.BarGraphItem(x=x, height=h, y0=bottom, width=0.7, brush=color, pen=pg.mkPen("w", width=0.5),
                                  name=split_name)
            self.chart.addItem(bar)
            self.bar_items.append((split_name, h))
            bottom = bottom + h
        legend = self.chart.getPlotItem().legend
        if legend is not None:
            legend.clear()
            legend.setColumnCount(len(self.bar_items))
            for split_name, _h in self.bar_items:
                legend.addItem(pg.BarGraphItem(x=[0], height=[0], width=1, brush=SPLIT_COLORS.get(split_name, "#0072B2")),
                               split_name)
        ax = self.chart.getPlotItem().getAxis("bottom")
        ax.setTicks([[(i, n if len(n) <= 20 else n[:19] + "…") for i, n in enumerate(names)]])
        self.chart.getPlotItem().setXRange(-0.6, len(names) - 0.4, padding=0)
        self.chart.getPlotItem().setYRange(0, max(1.0, float(bottom.max(initial=0))) * 1.2, padding=0)

    def chart_heights(self) -> dict[str, int]:
        """Total bar height per class (what the chart shows)."""
        if self.table is None or not getattr(self, "bar_items", None):
            return {}
        tot = sum(h for _n, h in self.bar_items)
        return {c: int(v) for c, v in zip(self.table.class_names, tot)}

    # --- thumbnails and preview ------------------------------------------------------------------
    def _load_thumbnails(self) -> None:
        table = self.table

        def done(by_class):
            if table is not self.table:
                return
            clear_layout(self.thumb_layout)
            self.thumbs.clear()
            for c, items in by_class.items():
                self.thumb_layout.addWidget(heading(f"{c}  ({table.report.counts.get(c, 0):,} images)"))
                strip = ThumbStrip(56, captions=False)
                strip.setObjectName(f"thumbs_{c}")
                for ref, arr in items:
                    strip.add(arr, "", Path(ref).name + "\n" + ref)
                self.thumb_layout.addWidget(strip)
                self.thumbs[c] = strip
            self.thumb_layout.addStretch(1)

        self.studio.tasks.submit(class_thumbnails, table, on_done=done)

    def _show_texts(self) -> None:
        """A few texts of each class in place of thumbnails."""
        table = self.table
        self.text_previews = text_preview(table)
        clear_layout(self.thumb_layout)
        for c, texts in self.text_previews.items():
            self.thumb_layout.addWidget(heading(f"{c}  ({table.report.counts.get(c, 0):,} texts)"))
            for text in texts:
                lab = QLabel(text if len(text) <= 400 else text[:399] + "…")
                lab.setObjectName(f"text_{c}")
                lab.setWordWrap(True)
                lab.setToolTip(text[:2000])
                lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                lab.setStyleSheet("background: palette(base); border: 1px solid palette(mid); border-radius: 3px; "
                                  "padding: 4px;")
                self.thumb_layout.addWidget(lab)
        self.thumb_layout.addStretch(1)

    def _load_annotated(self) -> None:
        """A few images with their boxes drawn or their captions beside them (in a worker)."""
        table = self.table

        def done(rows):
            if table is not self.table:
                return
            self.annotated = rows
            clear_layout(self.thumb_layout)
            grid = QGridLayout()
            for n, row in enumerate(rows):
                cell = QLabel()
                cell.setObjectName("annotatedImage")
                if row["image"] is not None:
                    cell.setPixmap(pixmap_from_array(row["image"], 160))
                cell.setToolTip(row["ref"])
                text = QLabel()
                text.setWordWrap(True)
                text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                name = Path(row["ref"]).name
                if row["error"]:
                    body = f"<span style='color:#b03a2e'>{row['error']}</span>"
                elif row["captions"]:
                    body = "<br>".join(f"“{c}”" for c in row["captions"])
                elif row["labels"]:
                    body = f"{len(row['labels'])} box{'es' if len(row['labels']) != 1 else ''}: " + ", ".join(row["labels"])
                else:
                    body = ANNOTATION_KINDS[table_kind(table)].without
                text.setText(f"<b>{name}</b><br>{body}")
                grid.addWidget(cell, n, 0)
                grid.addWidget(text, n, 1)
            grid.setColumnStretch(1, 1)
            self.thumb_layout.addLayout(grid)
            self.thumb_layout.addStretch(1)

        self.studio.tasks.submit(annotated_examples, table, on_done=done,
                                 on_error=lambda info: self.warnings.setText(f"⚠ The examples could not be drawn: "
                                                                             f"{info.message}"))

    def _new_draw(self) -> None:
        self._preview_seed += 1
        self.refresh_preview()

    def refresh_preview(self) -> None:
        """Draw the augmentation preview again (in a worker) with the current settings."""
        if self.table is None or not self.table.items:
            return
        if table_kind(self.table) == "text":
            clear_layout(self.preview_grid)
            self.preview_note.setText("Augmentation applies to images; texts are used as they are.")
            self.preview_note.show()
            return
        aug = self.studio.project.augmentation.model_copy()
        size = int(self.studio.project.model.image_size)
        table = self.table
        idx = preview_indices(table)
        seed = self._preview_seed

        def done(rows):
            if table is not self.table:
                return
            self._show_preview(rows)

        from tlstudio.core.data import augmentation_preview  # (imports torch: only once a preview is drawn)

        self._preview_task = self.studio.tasks.submit(augmentation_preview, table, idx, aug, size, PREVIEW_DRAWS, seed,
                                                      on_done=done, on_error=lambda info: self.preview_note.setText(
                                                          f"Preview failed: {info.message}"))

    def _show_preview(self, rows) -> None:
        clear_layout(self.preview_grid)
        self.preview_note.hide()
        labels = ["before"] + [f"after {i + 1}" for i in range(PREVIEW_DRAWS)]
        for r, text in enumerate(labels):
            lab = QLabel(text)
            lab.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.preview_grid.addWidget(lab, r, 0)
        for c, row in enumerate(rows):
            for r, arr in enumerate(row):
                cell = QLabel()
                cell.setPixmap(pixmap_from_array(arr, 64, smooth=False))
                cell.setFixedSize(66, 66)
                cell.setAlignment(Qt.AlignmentFlag.AlignCenter)
                cell.setStyleSheet("background: #202020;")
                self.preview_grid.addWidget(cell, r, c + 1)
        self.preview_generation += 1
        self.preview_rows = rows
