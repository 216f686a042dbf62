"""A run's HTML report: one self-contained file (charts as embedded PNG pictures, tables),
to open in any browser, print or send.

    from tlstudio.core.delivery.report import html_report
    path = html_report(run_dir)          # -> run_dir / "report.html"

It is built from the run folder alone (metrics.jsonl, final.json, evaluation_test.json,
test_predictions.csv, data.json, env.json, project.toml, exports.json), so it works for a
finished, stopped or failed run of any task: what a run does not have is left out.
Charts are drawn with matplotlib's Agg canvas (no pyplot, no GUI backend, no Qt).
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from pathlib import Path

from ..io import atomic_write_text
from ..tasks.traits import task_traits
from ..analysis.confidence import read_json, test_results

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em} th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:1em} .charts figure{margin:0} figcaption{font-size:.85em;color:#555;text-align:center}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em} .muted{color:#666} .bad{color:#b00}
"""


def _e(x) -> str:
    return html.escape(str(x))


def _num(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
    return _e(v)


def _ci(ci) -> str:
    return f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "–"


def _table(head: list[str], rows: list[list], raw: bool = False) -> str:
    h = "".join(f"<th>{_e(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else _num(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


# --- charts ----------------------------------------------------------------------------------
def _figure(w: float = 5.2, h: float = 3.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _line_chart(title: str, xs: list, series: dict[str, list], ylabel: str = "", log: bool = False,
                unit_range: bool = False) -> str | None:
    series = {k: v for k, v in series.items() if any(y is not None for y in v)}
    if not series or not xs:
        return None
    fig = _figure()
    ax = fig.add_subplot(111)
    for name, ys in series.items():
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None, ms=3, label=name)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    allv = [y for ys in series.values() for y in ys if y is not None]
    if unit_range and allv and 0.0 <= min(allv) and max(allv) <= 1.0:
        ax.set_ylim(max(0.0, min(allv) - 0.05), 1.01)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    if ylabel:
        ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _roc_chart(roc: dict, auc) -> str | None:
    if not roc or not roc.get("fpr"):
        return None
    fig = _figure(4.2, 4.0)
    ax = fig.add_subplot(111)
    ax.plot(roc["fpr"], roc["tpr"], lw=2, label=f"AUC {auc:.3f}" if isinstance(auc, float) else "ROC")
    ax.plot([0, 1], [0, 1], "--", color="#999", lw=1)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title("ROC curve (test)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def _confusion_chart(cm: list[list[int]], names: list[str]) -> str | None:
    if not cm or not names:
        return None
    import numpy as np

    a = np.asarray(cm, dtype=float)
    k = len(names)
    size = min(7.0, 2.8 + 0.45 * k)
    fig = _figure(size, size * 0.9)
    ax = fig.add_subplot(111)
    rows = a.sum(1, keepdims=True)
    frac = np.divide(a, rows, out=np.zeros_like(a), where=rows > 0)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(a[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if frac[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), labels=names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center", fontsize=8)
    ax.set_yticks(range(k), labels=names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix (test)")
    return _png(fig)


def _charts(epochs: list[dict], test: dict) -> list[tuple[str, str]]:
    xs = [e.get("epoch") for e in epochs]
    out: list[tuple[str, str | None]] = []
    out.append(("Loss", _line_chart("Loss", xs, {k: [e.get(k) for e in epochs] for k in ("train_loss", "val_loss")})))
    vals = sorted({k for e in epochs for k, v in e.items()
                   if k.startswith("val_") and k != "val_loss" and isinstance(v, (int, float))})
    out.append(("Validation metrics", _line_chart("Validation metrics", xs, {k[4:]: [e.get(k) for e in epochs] for k in vals},
                                                                 unit_range=True)))
    groups = sorted({g for e in epochs for g in (e.get("lr") or {})})
    out.append(("Learning rate", _line_chart("Learning rate by layer group (end of epoch)", xs,
                                             {g: [(e.get("lr") or {}).get(g) for e in epochs] for g in groups}, log=True)))
    extra = sorted({k for e in epochs for k in (e.get("series") or {})})
    out.append(("Technique series", _line_chart("Technique's own series", xs,
                                                {k: [(e.get("series") or {}).get(k) for e in epochs] for k in extra})))
    out.append(("ROC curve", _roc_chart(test.get("roc") or {}, test.get("auc"))))
    out.append(("Confusion matrix (colour: share of the true class)", _confusion_chart(test.get("confusion_matrix") or [], test.get("class_names") or [])))
    return [(t, p) for t, p in out if p]


# --- the report ------------------------------------------------------------------------------
def html_report(run_dir: str | Path, out: str | Path | None = None, n_boot: int = 2000) -> Path:
    """Write the run's report as one HTML file (default ``<run>/report.html``) and return its path."""
    from ..runs import open_run

    run = open_run(run_dir)
    d = run.dir
    final = run.final()
    status = run.status_info()
    env = run.env()
    data = read_json(d / "data.json")
    res = test_results(d, n_boot=n_boot)
    test, ci = res["metrics"], res["ci"]
    epochs = run.epochs()
    exports = read_json(d / "exports.json").get("exports", [])
    project_toml = run.project_file.read_text(encoding="utf-8") if run.project_file.exists() else ""
    flips = ""
    try:
        project = run.project()
        name, tech, model = project.name, project.technique.id, project.model.architecture
        if task_traits(project.task).can("flips"):
            flips = project.augmentation.flips_summary()
    except Exception:  # noqa: BLE001 - a damaged project file still gets a report
        name, tech, model = d.name, final.get("technique", "?"), final.get("model", "?")

    P: list[str] = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(name)} — {_e(run.id)}</title>"
                    f"<style>{_CSS}</style></head><body>",
                    f"<h1>{_e(name)}</h1><p class='muted'>{_e(tech)} on {_e(model)} · run {_e(run.id)} · "
                    f"report written {_dt.datetime.now():%Y-%m-%d %H:%M}</p>"]
    st = status.get("status", "?")
    summary = [["Status", f"<span class='{'bad' if st in ('failed', 'interrupted') else ''}'>{_e(st)}</span>"
                + (f" — {_e(status['message'])}" if status.get("message") else "")],
               ["Device", _e(final.get("device") or env.get("device", "–"))],
               ["Training time", _e(f"{final['train_seconds']:.0f} s") if final.get("train_seconds") is not None else "–"],
               ["Epochs", _e(f"{len(epochs)}")],
               ["Best epoch", _e(f"{final.get('best_epoch', status.get('best_epoch', '–'))} by "
                                 f"{final.get('monitor', status.get('monitor', '–'))} = "
                                 f"{_num(final.get('best_value', status.get('best_value')))}")],
               ["Data", _e(data.get("source", "–"))]] + ([["Mirror images", _e(flips)]] if flips else [])
    P.append("<h2>Summary</h2>" + _table(["", ""], summary, raw=True))

    if test:
        P.append("<h2>Test results</h2>")
        if test.get("n"):
            rows = [[title, test.get(key), _ci(ci.get(key))] for key, title in
                    (("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy"), ("auc", "AUC"),
                     ("f1_macro", "Macro F1"), ("loss", "Loss")) if key in test]
            P.append(f"<p>n = {_e(test['n'])} test cases. 95% confidence intervals: {_e(ci.get('method', '–'))}.</p>")
            P.append(_table(["metric", "value", "95% CI"], [[r[0], _num(r[1]), r[2]] for r in rows], raw=True))
        else:
            P.append(_table(["metric", "value"], [[k, v] for k, v in test.items() if isinstance(v, (int, float))]))
        pc, pci = test.get("per_class") or {}, ci.get("per_class") or {}
        if pc:
            rows = [[_e(c), f"{_num(v.get('sensitivity'))} ({_ci((pci.get(c) or {}).get('sensitivity'))})",
                     f"{_num(v.get('specificity'))} ({_ci((pci.get(c) or {}).get('specificity'))})",
                     _num(v.get("precision")), _num(v.get("f1")), _num(v.get("support"))] for c, v in pc.items()]
            P.append("<h3>Per class</h3>" + _table(["class", "sensitivity (95% CI)", "specificity (95% CI)", "precision",
                                                   "F1", "support"], rows, raw=True))
        cm, names = test.get("confusion_matrix"), test.get("class_names") or []
        if cm and names:
            P.append("<h3>Confusion matrix</h3><p class='muted'>rows: true class, columns: predicted</p>"
                     + _table([""] + names, [[names[i]] + list(r) for i, r in enumerate(cm)]))

    from ..analysis.summary import decision_html

    P.append(decision_html(test, data))
    charts = _charts(epochs, test)
    if charts:
        P.append("<h2>Charts</h2><div class='charts'>" + "".join(
            f"<figure><img alt='{_e(t)}' src='data:image/png;base64,{p}'><figcaption>{_e(t)}</figcaption></figure>"
            for t, p in charts) + "</div>")

    if epochs:
        keys = [k for k in ("train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy", "val_auc", "val_f1_macro")
                if any(k in e for e in epochs)]
        rows = [[e.get("epoch")] + [e.get(k) for k in keys] + [e.get("seconds"), "✓" if e.get("best") else ""] for e in epochs]
        P.append("<h2>Epochs</h2>" + _table(["epoch"] + keys + ["seconds", "best"], rows))

    sc = data.get("split_counts") or {}
    names = data.get("class_names") or []
    if sc and names:
        rows = [[s] + [sc[s].get(c, 0) for c in names] + [sum(sc[s].values())] for s in ("train", "val", "test") if s in sc]
        P.append("<h2>Data and splits</h2>"
                 f"<p>{_e(data.get('source', ''))} (reader {_e(data.get('reader', '?'))}, images {_e(data.get('image_size', '?'))} px, "
                 f"fingerprint {_e(data.get('fingerprint', '?'))})</p>" + _table(["split"] + names + ["total"], rows))
        skipped = (data.get("report") or {}).get("skipped") or []
        if skipped:
            rows = [[_e(s.get("ref", "")), _e(s.get("reason", ""))] for s in skipped[:100]]
            P.append(f"<h3>Skipped files ({len(skipped)})</h3>" + _table(["file", "reason"], rows, raw=True)
                     + ("<p class='muted'>first 100 shown</p>" if len(skipped) > 100 else ""))

    if exports:
        rows = [[_e(x.get("format")), _e(x.get("package")), _num(x.get("max_abs_diff")), _e(x.get("n_inputs")),
                 _e(x.get("created"))] for x in exports]
        P.append("<h2>Exports</h2>" + _table(["format", "package", "max abs diff", "inputs checked", "created"], rows, raw=True))

    if project_toml:
        P.append(f"<h2>Run configuration</h2><p class='muted'>repeat with <code>tlstudio train {_e(run.project_file)}</code></p>"
                 f"<pre>{_e(project_toml)}</pre>")
    if env:
        P.append("<h2>Environment</h2>" + _table(["", ""], [[_e(k), _e(v)] for k, v in env.items()], raw=True))
    P.append("</body></html>")
    path = (Path(out) if out else d / "report.html").resolve()
    atomic_write_text(path, "\n".join(P))
    import os

    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
    return path
