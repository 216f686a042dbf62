"""Exports: a trained run's model leaves the studio as a checked, self-describing package.

An :class:`Exporter` (a plugin, hook ``tlstudio_exporters``; TorchScript and ONNX are
built in) turns a plain ``nn.Module`` into a file and runs that file again in its own
runtime.  :func:`export_run` does the rest for any technique:

1. the run's model, from its best checkpoint: ``task.inference_model(ctx)``;
2. REAL inputs: ``task.export_inputs(ctx, n)`` (image classification: preprocessed
   validation images of the run's own split);
3. the export, traced with two inputs and checked with all ``n`` and with one (dynamic batch):
   the exported model must match the PyTorch model to ``tolerance`` (max abs difference,
   fp32 on the CPU), or the export fails and leaves nothing behind;
4. the package folder: the model file, ``labels.json``/``labels.txt``,
   ``preprocessing.json``, ``package.json``, ``model_card.md``/``.json`` and ``SHA256SUMS``.

``tlstudio predict PACKAGE IMAGES...`` (:mod:`tlstudio.core.delivery.package`) then works from the
package alone.  Each task supplies its own ``export_inputs``, ``export_spec`` and
``predict_package`` (see :class:`tlstudio.core.tasks.base.Task`).
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .exporter import ExportError, Exporter, Runner, flatten_outputs  # noqa: F401 (the public names)
from ..errors import StudioError
from ..io import atomic_write_json, atomic_write_text, sha256_file

#: the largest max-abs difference between the exported model and PyTorch (fp32) that passes
PARITY_TOLERANCE = 1e-4
PACKAGE_FORMAT = "tlstudio-model-package"
PACKAGE_VERSION = 1
#: how many real inputs the parity check uses by default
DEFAULT_CHECK_INPUTS = 32

def torch_outputs(model, inputs: Sequence) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        return [t.detach().float().cpu().numpy() for t in flatten_outputs(model(*inputs))]


def max_abs_difference(reference: list[np.ndarray], got: list[np.ndarray]) -> float:
    if len(reference) != len(got):
        raise ExportError(f"The exported model gives {len(got)} outputs, PyTorch {len(reference)}.")
    worst = 0.0
    for r, g in zip(reference, got):
        g = np.asarray(g)
        if r.shape != g.shape:
            raise ExportError(f"The exported model's output has shape {tuple(g.shape)}, PyTorch's {tuple(r.shape)}.")
        worst = max(worst, float(np.max(np.abs(r.astype(np.float64) - g.astype(np.float64)))) if r.size else 0.0)
    return worst


def check_parity(model, runner: Runner, inputs: tuple, tolerance: float = PARITY_TOLERANCE) -> dict:
    """Run the PyTorch model and the exported one on the same real inputs (all of them in
    one batch, then the first alone): the max abs difference, or :class:`ExportError` above
    ``tolerance``."""
    batches = [tuple(inputs), tuple(t[:1] for t in inputs)]
    diffs = []
    for batch in batches:
        ref = torch_outputs(model, batch)
        try:
            got = runner([t.detach().cpu().numpy() for t in batch])
        except Exception as e:  # noqa: BLE001 - a runtime error is an export failure, said plainly
            raise ExportError(f"The exported model could not run a batch of {int(batch[0].shape[0])}: "
                              f"{type(e).__name__}: {e}") from e
        diffs.append(max_abs_difference(ref, got))
    worst = max(diffs)
    result = {"max_abs_diff": worst, "tolerance": tolerance, "n_inputs": int(inputs[0].shape[0]),
              "batch_sizes": [int(b[0].shape[0]) for b in batches], "dtype": "float32", "passed": worst <= tolerance}
    if not worst <= tolerance:  # also catches NaN
        raise ExportError(f"Parity check failed: the exported model differs from the PyTorch model by up to "
                          f"{worst:.3g} (allowed {tolerance:g}) on {result['n_inputs']} real inputs. The export "
                          "was not written.")
    return result


def probability_parity(model, runner: Runner, inputs: tuple) -> float:
    """Max abs difference of the softmax probabilities (the exported model vs PyTorch)."""
    import torch

    ref = torch_outputs(model, inputs)[0].astype(np.float64)
    got = np.asarray(runner([t.detach().cpu().numpy() for t in inputs])[0], dtype=np.float64)
    sm = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)  # noqa: E731
    return float(np.abs(sm(ref) - sm(got)).max()) if ref.size else 0.0


# --- a whole run -----------------------------------------------------------------------------
def _prepare_out(out: Path) -> None:
    above = next((p for p in out.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise ExportError(f"{out}: cannot make the package folder there: {above} is a file, not a folder.")
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"{out} is a file: give a folder for the model package.")
        if any(out.iterdir()) and not (out / "package.json").exists():
            raise ExportError(f"{out} is not empty and holds no exported package: choose a new or empty folder.")


def _install(tmp: Path, out: Path) -> None:
    """Put the finished package in place of ``out`` (an empty folder or an older package)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            old.rename(out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def _share(folder: Path) -> None:
    """Temp files are private (0600): a package is meant to be shared, so give it the
    permissions of ordinary new files (umask respected)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(folder, 0o777 & ~mask)
    for p in folder.rglob("*"):
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def write_checksums(folder: Path, name: str = "SHA256SUMS") -> dict[str, str]:
    """``sha256sum -c``-compatible checksums of every file in ``folder`` (but this one)."""
    hashes = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
              if p.is_file() and p.name != name}
    atomic_write_text(folder / name, "".join(f"{h}  {f}\n" for f, h in hashes.items()))
    return hashes


def export_run(run_ref: str | Path, fmt: str, out: str | Path, *, runs_dir: str | Path | None = None, plugins=None,
               n_inputs: int = DEFAULT_CHECK_INPUTS, tolerance: float = PARITY_TOLERANCE, checkpoint: str = "best",
               intended_use: str | None = None, on_event: Callable[[dict], None] | None = None) -> dict:
    """Export a trained run as a model package in ``out`` (see the module docstring).

    Returns {"package", "format", "model_file", "parity": {"max_abs_diff", ...}, "seconds", "files"}.
    """
    import torch

    from ..engine.inference import open_run_model
    from ..events import Log
    from ..plugins import get_plugin_manager
    from ..runs import open_run
    from ..settings import load_settings

    t0 = time.time()
    emit = on_event or (lambda e: None)
    plugins = plugins or get_plugin_manager()
    exporters = plugins.exporters()
    if fmt not in exporters:
        raise ExportError(f"Unknown export format '{fmt}'. Available: {', '.join(sorted(exporters)) or 'none'} "
                          "(see `tlstudio plugins`).")
    exporter = exporters[fmt]
    exporter.check_available()
    out = Path(out).expanduser().resolve()
    _prepare_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)  # the package is built beside it, then renamed

    run = open_run(run_ref, runs_dir or load_settings().runs_path())
    ctx = open_run_model(run, plugins=plugins, which=checkpoint, device="cpu", emit=emit)
    tech, task = ctx.technique, ctx.task
    if task.export_formats is not None and fmt not in task.export_formats:
        raise ExportError(f"A {task.title.lower() or task.id} run exports to {', '.join(task.export_formats)} only "
                          f"(asked: {fmt}).")
    model = task.inference_model(ctx).float().cpu().eval()
    emit(Log(message=f"Reading {n_inputs} validation inputs of run {run.id} ..."))
    try:
        inputs = task.export_inputs(ctx, n_inputs)
    except NotImplementedError as e:
        raise ExportError(str(e)) from None
    except StudioError as e:
        raise ExportError(f"The run's data is needed to check the export on real inputs, and it could not be "
                          f"read: {e}") from None
    inputs = tuple(t.detach().float().cpu() if t.is_floating_point() else t.detach().cpu() for t in inputs)
    if not inputs or int(inputs[0].shape[0]) < 1:
        raise ExportError("The run has no validation inputs to check the export with.")
    info = dict(ctx.scratch.get("export_inputs_info") or {})
    trained_on = run.env().get("data_fingerprint")
    if trained_on and info.get("fingerprint") and info["fingerprint"] != trained_on:
        ctx.log("The run's data changed since training: the parity check uses today's files.", "warning")
    spec = task.export_spec(ctx)
    if len(spec.get("inputs", [])) != len(inputs):
        raise ExportError(f"The task names {len(spec.get('inputs', []))} model inputs but gave {len(inputs)}.")
    if spec.get("temperature_in_model"):  # calibrated logits leave the studio, and parity covers them
        from ..analysis.calibration import TemperatureScaled

        model = TemperatureScaled(model, spec["decision"]["temperature"]).eval()

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=str(out.parent)))
    try:
        model_path = tmp / exporter.file_name
        example = tuple(t[:2] for t in inputs)
        emit(Log(message=f"Exporting to {exporter.title} ..."))
        t_exp = time.time()
        try:
            with torch.no_grad():
                exporter.export(model, example, spec, model_path)
        except ExportError:
            raise
        except Exception as e:  # noqa: BLE001 - say which model and format failed, in plain words
            raise ExportError(f"{exporter.title} export of {run.project().model.architecture} failed: "
                              f"{type(e).__name__}: {e}") from e
        export_seconds = time.time() - t_exp
        emit(Log(message=f"Checking {exporter.title} against PyTorch on {int(inputs[0].shape[0])} real inputs ..."))
        runner = exporter.load(model_path, spec)
        parity = check_parity(model, runner, inputs, tolerance)
        if spec.get("postprocess") == "softmax":  # the probabilities a user reads: calibrated ones where the run has them
            parity["max_abs_diff_probabilities"] = probability_parity(model, runner, inputs)
        parity.update(split=info.get("split", ""), source=info.get("source", ""), runtime=exporter.runtime,
                      kind=task.inputs)

        project = run.project()
        ckpt = ctx.checkpoint
        from tlstudio import __version__

        labels = list(spec.get("labels") or [])
        atomic_write_json(tmp / "labels.json", labels)
        atomic_write_text(tmp / "labels.txt", "".join(f"{c}\n" for c in labels))
        atomic_write_json(tmp / "preprocessing.json", spec.get("preprocessing") or {})
        package = {
            "format": PACKAGE_FORMAT, "format_version": PACKAGE_VERSION,
            "name": project.name, "task": spec.get("task", task.id), "technique": tech.id,
            "architecture": project.model.architecture, "exporter": exporter.id, "runtime": exporter.runtime,
            "model_file": exporter.file_name, "inputs": list(spec["inputs"]), "outputs": list(spec["outputs"]),
            "dynamic_batch": True, "labels": labels, "postprocess": spec.get("postprocess", "none"),
            "preprocessing": spec.get("preprocessing") or {}, "parity": parity,
            "run_id": run.id, "checkpoint": {"which": checkpoint, "epoch": ckpt.get("epoch")},
            "created": _dt.datetime.now().isoformat(timespec="seconds"), "tlstudio": __version__,
            "versions": exporter.versions(),
        }
        # what else the task put in its spec (thresholds, a decision ...) travels in package.json too
        package.update({k: v for k, v in spec.items() if k not in package and k not in ("files", "dynamic_axes")})
        for name, src in (spec.get("files") or {}).items():  # files that go with the model (a tokenizer's)
            shutil.copyfile(src, tmp / name)
        atomic_write_json(tmp / "package.json", package)
        from .modelcard import build_model_card

        model_hashes = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        card_md, card = build_model_card(run, package, model_hashes, intended_use=intended_use)
        atomic_write_json(tmp / "model_card.json", card)
        atomic_write_text(tmp / "model_card.md", card_md)
        hashes = write_checksums(tmp)
        _share(tmp)
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = {"package": str(out), "format": exporter.id, "model_file": str(out / exporter.file_name),
              "run_id": run.id, "parity": parity, "export_seconds": export_seconds, "seconds": time.time() - t0,
              "files": hashes, "size_bytes": sum((out / f).stat().st_size for f in hashes)}
    _record(run, result)
    return result


def _record(run, result: dict) -> None:
    """Remember the export in the run folder (exports.json), for the window and the report."""
    from ..analysis.confidence import read_json

    path = run.dir / "exports.json"
    items = read_json(path).get("exports", [])
    items.append({"format": result["format"], "package": result["package"], "max_abs_diff": result["parity"]["max_abs_diff"],
                  "n_inputs": result["parity"]["n_inputs"], "created": _dt.datetime.now().isoformat(timespec="seconds")})
    try:
        atomic_write_json(path, {"exports": items})
    except OSError:
        pass
