"""Built-in exporters: TorchScript and ONNX (dynamic batch).

Both trace the model with a batch of two real inputs; :func:`tlstudio.core.delivery.export.export_run`
then checks the file against PyTorch on all the validation inputs and on one alone.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from tlstudio.api import ExportError, Exporter, flatten_outputs, hookimpl


class TorchScriptExporter(Exporter):
    id = "torchscript"
    title = "TorchScript"
    file_name = "model.torchscript.pt"
    runtime = "torch.jit"
    description = "A traced TorchScript module: runs with PyTorch alone (C++ libtorch too), no Python class needed."

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch": torch.__version__}

    def export(self, model, example_inputs: tuple, spec: dict, path: Path) -> None:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notices and tracer notes
            traced = torch.jit.trace(model, example_inputs, check_trace=False)
            torch.jit.save(traced, str(path))

    def load(self, path: Path, spec: dict):
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = torch.jit.load(str(path), map_location="cpu").eval()

        def run(arrays):
            with torch.no_grad():
                out = m(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
            return [t.detach().cpu().numpy() for t in flatten_outputs(out)]

        return run


class OnnxExporter(Exporter):
    id = "onnx"
    title = "ONNX"
    file_name = "model.onnx"
    runtime = "onnxruntime"
    description = "ONNX (opset 18, dynamic batch): runs with onnxruntime and most inference servers, no PyTorch needed."
    opset = 18

    def check_available(self) -> None:
        missing = []
        for mod in ("onnx", "onnxruntime"):
            try:
                __import__(mod)
            except ImportError:
                missing.append(mod)
        if missing:
            raise ExportError(f"ONNX needs the Python package(s) {', '.join(missing)}, which are not installed here. "
                              "Install them from the offline bundle, or export as TorchScript instead.")

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime
        import torch

        return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}

    def export(self, model, example_inputs: tuple, spec: dict, path: Path) -> None:
        import onnx
        import torch

        ins, outs = list(spec["inputs"]), list(spec["outputs"])
        # dim 0 (batch) of every input and output is dynamic; a technique may name more
        # (text: {"input_ids": {0: "batch", 1: "sequence"}, ...}) in spec["dynamic_axes"]
        axes = {n: {0: "batch"} for n in ins + outs}
        for n, dims in (spec.get("dynamic_axes") or {}).items():
            axes[n] = {int(k): v for k, v in dims.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:  # the TorchScript-based exporter: quick, and right for the catalog's CNNs and ViT
                torch.onnx.export(model, example_inputs, str(path), input_names=ins, output_names=outs,
                                  dynamic_axes=axes, opset_version=self.opset,
                                  do_constant_folding=True, dynamo=False)
            except Exception as first:  # noqa: BLE001 - models the tracer cannot follow: torch.export's exporter
                Path(path).unlink(missing_ok=True)
                dims: dict[str, object] = {"batch": torch.export.Dim("batch", min=2, max=65536)}
                shapes = tuple({k: dims.setdefault(v, torch.export.Dim(v, min=2, max=65536))
                                for k, v in axes.get(n, {0: "batch"}).items()} for n in ins)
                try:
                    torch.onnx.export(model, example_inputs, str(path), input_names=ins, output_names=outs,
                                      dynamic_shapes=shapes, dynamo=True,
                                      external_data=False, verbose=False)
                except Exception as second:  # noqa: BLE001
                    raise ExportError(f"ONNX export failed with both exporters: {type(first).__name__}: {first}; "
                                      f"then {type(second).__name__}: {second}") from second
        onnx.checker.check_model(str(path))

    def load(self, path: Path, spec: dict):
        import onnxruntime as ort
        import torch

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]

        def run(arrays):
            return sess.run(None, {n: np.ascontiguousarray(a) for n, a in zip(names, arrays)})

        return run


@hookimpl
def tlstudio_exporters():
    return [TorchScriptExporter(), OnnxExporter()]
