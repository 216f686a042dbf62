"""What the Runs and Train pages ask of core about a finished run, called in worker threads:
export a run as a checked package, write its HTML report, compare transfer with training from
scratch.  Plain functions (no widgets); the dialogs and pages call them through the studio's
task runner and show what they return."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

def run_task(run_dir: str | Path) -> str:
    """The task of a run's project ("image-classification" when it cannot be read)."""
    from tlstudio.core.runs import Run

    try:
        return Run(run_dir).project().task
    except Exception:  # noqa: BLE001 - the export itself says what is wrong with the run
        return "image-classification"


def export_formats(plugins, task: str) -> dict[str, str]:
    """{format id: title} the run can be exported to: the exporter plugins its task takes
    (every one for an image run; ONNX, with the tokenizer, for a text run)."""
    exporters = plugins.exporters() if plugins is not None else {}
    allowed = getattr(plugins.tasks().get(task), "export_formats", None) if plugins is not None else None
    out = {}
    for fid, ex in sorted(exporters.items()):
        if allowed is None or fid in allowed:
            out[fid] = f"{ex.title or fid}" + (f" ({ex.runtime})" if getattr(ex, "runtime", "") else "")
    return out


def default_export_folder(run_dir: str | Path, fmt: str) -> Path:
    return Path(run_dir) / f"export-{fmt}"


def export_package(run_dir: str | Path, fmt: str, out: str | Path, *, plugins=None,
                   on_event: Callable[[dict], None] | None = None) -> dict:
    """Export the run (``export.export_run``: any task, the exporters its task takes) and return
    one summary: package, format, max_abs_diff, tolerance, n_inputs, files, passed."""
    from tlstudio.core.delivery.export import export_run

    res = export_run(run_dir, fmt, out, plugins=plugins, on_event=on_event)
    par = res["parity"]
    split = {"val": "validation"}.get(par.get("split") or "val", par.get("split"))
    return {"package": res["package"], "format": res["format"], "model_file": res["model_file"],
            "max_abs_diff": float(par["max_abs_diff"]), "tolerance": float(par["tolerance"]),
            "n_inputs": int(par["n_inputs"]), "inputs_kind": f"{split} {par.get('kind') or 'images'}",
            "files": sorted(res["files"]), "passed": float(par["max_abs_diff"]) <= float(par["tolerance"])}


def parity_text(s: dict) -> str:
    """The parity figure as the user reads it."""
    verdict = "passed" if s.get("passed") else "FAILED"
    return (f"Parity {verdict}: the exported model differs from PyTorch by at most {s['max_abs_diff']:.2e} "
            f"on {s['n_inputs']} real {s.get('inputs_kind', 'inputs')} (allowed {s['tolerance']:.0e}).")


def write_report(run_dir: str | Path) -> str:
    from tlstudio.core.delivery.report import html_report

    return str(html_report(run_dir))
