"""Export a text classifier to ONNX, with its tokenizer files beside it, and prove it right.

The folder it writes holds everything another program needs, without the studio:

    model.onnx              inputs input_ids, attention_mask (int64, batch x tokens); output logits
    tokenizer.json, ...     the model's own tokenizer (load with AutoTokenizer / tokenizers)
    labels.json             class names in output order
    preprocessing.json      maximum length, input names, how to get probabilities
    export.json             the parity check: max abs difference of onnxruntime vs PyTorch

Parity is measured with onnxruntime on real texts (the run's validation or test texts) in
padded batches, so the attention mask is exercised; above the tolerance the export fails.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .errors import StudioError
from .io import atomic_write_json

INPUT_NAMES = ["input_ids", "attention_mask"]
FALLBACK_TEXTS = ["This is a short sentence.", "A second, somewhat longer sentence to check that padding is handled."]


def _export(wrapper: torch.nn.Module, sample: dict, path: Path, opset: int) -> str:
    args = (sample["input_ids"], sample["attention_mask"])
    with warnings.catch_warnings():  # the exporters' notes on axis names and tracing are not the user's concern
        warnings.simplefilter("ignore")
        return _export_quietly(wrapper, args, path, opset)


def _export_quietly(wrapper: torch.nn.Module, args: tuple, path: Path, opset: int) -> str:
    try:  # the torch.export based exporter (torch >= 2.5)
        batch, seq = torch.export.Dim("batch", min=1), torch.export.Dim("sequence", min=2)
        torch.onnx.export(wrapper, args, str(path), input_names=INPUT_NAMES, output_names=["logits"],
                          dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
                          opset_version=opset, dynamo=True, external_data=False, verbose=False)
        return "dynamo"
    except Exception as first:  # noqa: BLE001 - some models only trace with the older exporter
        try:
            torch.onnx.export(wrapper, args, str(path), input_names=INPUT_NAMES, output_names=["logits"],
                              dynamic_axes={n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES} | {"logits": {0: "batch"}},
                              opset_version=opset, dynamo=False)
            return "torchscript"
        except Exception as second:  # noqa: BLE001
            raise StudioError(f"ONNX export failed: {type(first).__name__}: {first}; the TorchScript exporter too: "
                              f"{type(second).__name__}: {second}") from second


def onnx_logits(onnx_path: str | Path, tokenizer, texts: list[str], max_length: int, batch_size: int = 16) -> np.ndarray:
    """Logits of ``texts`` from an exported model with onnxruntime (CPU), tokenized as in training."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="np")
        feeds = {n: enc[n].astype(np.int64) for n in INPUT_NAMES}
        out.append(sess.run(["logits"], feeds)[0])
    return np.concatenate(out)


@torch.no_grad()
def torch_logits(model: torch.nn.Module, tokenizer, texts: list[str], max_length: int, batch_size: int = 16) -> np.ndarray:
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        out.append(model(**{n: enc[n].to(device) for n in INPUT_NAMES}).logits.float().cpu().numpy())
    return np.concatenate(out)


def export_text_onnx(model, tokenizer, class_names: list[str], max_length: int, out_dir: str | Path,
                     texts: list[str] | None = None, tolerance: float = 1e-4, opset: int = 18, decision=None) -> dict:
    """Export ``model`` (a Hugging Face sequence classifier) to ``out_dir``; returns the summary
    written to export.json (files, parity, seconds).  ``decision`` (the run's
    :class:`~tlstudio.core.analysis.decision.RunDecision`) is written beside it as
    decision.json: :func:`predict_exported` applies its calibration, operating point and sets,
    and the parity check covers the calibrated probabilities."""
    from .models.huggingface import quiet_transformers
    from .text import LogitsModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = [t for t in (texts or []) if t and t.strip()] or FALLBACK_TEXTS
    model = model.float().eval().cpu()
    wrapper = LogitsModel(model).eval()
    t0 = time.time()
    with quiet_transformers():
        sample = tokenizer(texts[:4] if len(texts) > 1 else texts * 2, padding=True, truncation=True,
                           max_length=max_length, return_tensors="pt")
        sample = {n: sample[n] for n in INPUT_NAMES}
        onnx_path = out / "model.onnx"
        exporter = _export(wrapper, sample, onnx_path, opset)
        tokenizer.save_pretrained(str(out))
        got = onnx_logits(onnx_path, tokenizer, texts, max_length)
        ref = torch_logits(model, tokenizer, texts, max_length)
    diff = float(np.abs(got - ref).max()) if len(ref) else 0.0
    agree = float((got.argmax(1) == ref.argmax(1)).mean()) if len(ref) else 1.0
    from .analysis.calibration import softmax_t

    temp = decision.temperature if decision is not None else 1.0
    pdiff = float(np.abs(softmax_t(got, temp) - softmax_t(ref, temp)).max()) if len(ref) else 0.0
    if decision is not None:
        decision.save(out)
    atomic_write_json(out / "labels.json", list(class_names))
    atomic_write_json(out / "preprocessing.json", {
        "kind": "text-classification", "tokenizer": "the Hugging Face tokenizer files in this folder",
        "max_length": int(max_length), "padding": "pad each batch to its longest text", "truncation": True,
        "inputs": INPUT_NAMES, "output": "logits (batch x classes); softmax gives the probabilities",
        "class_names": list(class_names)})
    summary = {"format": "onnx", "exporter": exporter, "opset": opset, "path": str(onnx_path),
               "parity_texts": len(texts), "max_abs_diff": diff, "same_class_share": agree, "tolerance": tolerance,
               "max_abs_diff_probabilities": pdiff, "temperature": temp,
               "seconds": round(time.time() - t0, 2),
               "files": sorted(p.name for p in out.iterdir() if p.is_file())}
    atomic_write_json(out / "export.json", summary)
    _readable(out)
    if not diff <= tolerance:
        raise StudioError(f"ONNX parity check failed: onnxruntime and PyTorch differ by up to {diff:.2e} on "
                          f"{len(texts)} texts (tolerance {tolerance:.0e}); the files in {out} should not be used.")
    return summary


def export_run_onnx(run_ref, out_dir: str | Path, runs_dir=None, plugins=None, max_texts: int = 64,
                    tolerance: float = 1e-4) -> dict:
    """Export a finished text-classification run: its best model, checked on up to
    ``max_texts`` of its own test (else validation) texts."""
    import csv

    from .predict import Predictor

    pred = Predictor.from_run(run_ref, runs_dir=runs_dir, plugins=plugins)
    task = pred.task
    if not hasattr(task, "export_onnx"):
        raise StudioError(f"{pred.run.dir}: the task {task.id} does not export text models.")
    texts: list[str] = []
    for name in ("test_predictions.csv", "val_predictions.csv"):
        f = pred.run.dir / name
        if f.exists() and not texts:
            with open(f, newline="", encoding="utf-8") as fh:
                texts = [r["text"] for r in csv.DictReader(fh) if r.get("text")][:max_texts]
    summary = task.export_onnx(pred.ctx, out_dir, texts or None, tolerance)
    summary["run_dir"] = str(pred.run.dir)
    atomic_write_json(Path(out_dir) / "export.json", summary)
    from .export import write_checksums

    write_checksums(Path(out_dir))  # every file listed: predict refuses a changed or added one
    _readable(Path(out_dir))
    return summary


def _readable(folder: Path) -> None:
    """An export is for others to use: its files readable by all (atomic writes create them 0600)."""
    for f in folder.iterdir():
        if f.is_file():
            try:
                f.chmod(0o644)
            except OSError:
                pass


def predict_exported(folder: str | Path, texts: list[str]) -> list[dict]:
    """Predict with an exported folder alone (model.onnx + tokenizer + labels): what another
    program does with it, no run and no PyTorch model needed."""
    from .models.huggingface import load_tokenizer

    from .package import verify_checksums

    folder = Path(folder)
    verify_checksums(folder)
    pre = json.loads((folder / "preprocessing.json").read_text(encoding="utf-8"))
    names = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    logits = onnx_logits(folder / "model.onnx", load_tokenizer(folder), list(texts), int(pre["max_length"]))
    from .analysis.calibration import softmax_t
    from .analysis.decision import RunDecision

    dec = RunDecision.load(folder, list(names))  # calibration, operating point, sets (argmax without the file)
    return [{"ref": t, **row} for t, row in zip(texts, dec.results(softmax_t(logits)))]
