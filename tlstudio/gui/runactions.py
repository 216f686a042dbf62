"""What the Runs and Train pages ask of core about a finished run, called in worker threads:
export a run as a checked package, write its HTML report, compare transfer with training from
scratch.  Plain functions (no widgets); the dialogs and pages call them through the studio's
task runner and show what they return."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

TEXT_TASK = "text-classification"


def run_task(run_dir: str | Path) -> str:
    """The task of a run's project ("image-classification" when it cannot be read)."""
    from tlstudio.core.runs import Run

    try:
        return Run(run_dir).project().task
    except Exception:  # noqa: BLE001 - the export itself says what is wrong with the run
        return "image-classification"


def export_formats(plugins, task: str) -> dict[str, str]:
    """{format id: title} the run can be exported to: every exporter plugin for an image run,
    ONNX (with its tokenizer) for a text-classification run."""
    if task == TEXT_TASK:
        return {"onnx": "ONNX with its tokenizer (onnxruntime)"}
    out = {}
    for fid, ex in sorted((plugins.exporters() if plugins is not None else {}).items()):
        out[fid] = f"{ex.title or fid}" + (f" ({ex.runtime})" if getattr(ex, "runtime", "") else "")
    return out


def default_export_folder(run_dir: str | Path, fmt: str) -> Path:
    return Path(run_dir) / f"export-{fmt}"


def export_package(run_dir: str | Path, fmt: str, out: str | Path, *, plugins=None,
                   on_event: Callable[[dict], None] | None = None) -> dict:
    """Export the run (image runs: ``export.export_run``; text runs: ``text_export.export_run_onnx``)
    and return one summary: package, format, max_abs_diff, tolerance, n_inputs, files, passed."""
    if run_task(run_dir) == TEXT_TASK:
        from tlstudio.core.errors import StudioError
        from tlstudio.core.text_export import export_run_onnx

        if fmt != "onnx":
            raise StudioError("A text-classification run exports to ONNX with its tokenizer: choose ONNX.")
        if on_event:
            on_event({"kind": "stage",
                      "message": "Exporting the text model to ONNX and checking it on its own texts ..."})
        s = export_run_onnx(run_dir, out, plugins=plugins)
        return {"package": str(Path(out).resolve()), "format": "onnx", "model_file": s.get("path", ""),
                "max_abs_diff": float(s["max_abs_diff"]), "tolerance": float(s.get("tolerance", 1e-4)),
                "n_inputs": int(s.get("parity_texts", 0)), "inputs_kind": "texts", "files": list(s.get("files", [])),
                "passed": float(s["max_abs_diff"]) <= float(s.get("tolerance", 1e-4))}
    from tlstudio.core.export import export_run

    res = export_run(run_dir, fmt, out, plugins=plugins, on_event=on_event)
    par = res["parity"]
    split = {"val": "validation"}.get(par.get("split") or "val", par.get("split"))
    return {"package": res["package"], "format": res["format"], "model_file": res["model_file"],
            "max_abs_diff": float(par["max_abs_diff"]), "tolerance": float(par["tolerance"]),
            "n_inputs": int(par["n_inputs"]), "inputs_kind": f"{split} images",
            "files": sorted(res["files"]), "passed": float(par["max_abs_diff"]) <= float(par["tolerance"])}


def parity_text(s: dict) -> str:
    """The parity figure as the user reads it."""
    verdict = "passed" if s.get("passed") else "FAILED"
    return (f"Parity {verdict}: the exported model differs from PyTorch by at most {s['max_abs_diff']:.2e} "
            f"on {s['n_inputs']} real {s.get('inputs_kind', 'inputs')} (allowed {s['tolerance']:.0e}).")


def write_report(run_dir: str | Path) -> str:
    from tlstudio.core.report import html_report

    return str(html_report(run_dir))
