"""Text classification: the data of a run, and the task (the built-in task plugin
``text-classification``).

The expert's texts (CSV / TSV / JSONL / UCI ``sentence<TAB>label``, see
:mod:`tlstudio.core.data.text`) are read, checked, split (stratified, stored) and tokenized
once with the model folder's own tokenizer; batches are padded to their longest text.  The
model is ``AutoModelForSequenceClassification`` from a LOCAL Hugging Face folder
(:mod:`tlstudio.core.models.huggingface`), with layer groups ``embeddings``, ``layer 1..N``,
``head`` so that the blocks of :mod:`tlstudio.core.techniques.blocks` (freezing, per-group learning
rates) apply as they do to images.

A run folder keeps everything prediction needs (``text_model/``: the tokenizer and the model
config; the weights are in the checkpoints), so a run predicts, explains and exports even
when the original model folder has moved.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .classification import ClassifierTask, SplitItems, classification_report_md, stored_split, write_classifier_evaluation
from .traits import TEXT_CLASSIFICATION
from ..errors import DataError, StudioError

SPLITS = ("train", "val", "test")
RUN_MODEL_DIR = "text_model"  # tokenizer + config inside a run folder
EXPLAIN_METHOD = "integrated gradients (gradient × input averaged from a blank text)"
EXPLAIN_STEPS = 20


# --- data ---------------------------------------------------------------------------------------
class PadCollate:
    """Pads a batch of token-id lists to its longest one: ({input_ids, attention_mask}, labels)."""

    def __init__(self, pad_id: int):
        self.pad_id = int(pad_id)

    def __call__(self, batch):
        n = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, (ids, _) in enumerate(batch):
            input_ids[i, :len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            mask[i, :len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}, torch.as_tensor([y for _, y in batch], dtype=torch.long)


class TextDataset(torch.utils.data.Dataset):
    def __init__(self, ids: list[list[int]], labels: np.ndarray, indices: np.ndarray):
        self.ids, self.labels, self.indices = ids, labels, np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = int(self.indices[k])
        return self.ids[i], int(self.labels[i])


def encode(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], np.ndarray]:
    """Token ids (cut to ``max_length``, special tokens kept) and each text's full length."""
    from ..models.huggingface import quiet_transformers

    with quiet_transformers():
        full = tokenizer(texts, truncation=False)["input_ids"]
        cut = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return cut, np.array([len(x) for x in full], dtype=np.int64)


def model_max_length(tokenizer, config_path: Path | None = None) -> int | None:
    """The longest input the model takes (tokenizer's limit, else the config's positions)."""
    m = getattr(tokenizer, "model_max_length", None)
    if isinstance(m, int) and 0 < m < 100_000:
        return m
    try:
        cfg = json.loads(Path(config_path).read_text(encoding="utf-8")) if config_path else {}
    except (OSError, ValueError):
        cfg = {}
    pos = cfg.get("max_position_embeddings")
    return int(pos) if isinstance(pos, int) and pos > 0 else None


class TextData(SplitItems):
    """The prepared texts of one run: read, checked, split and tokenized once."""

    def __init__(self, table, assignments: list[str], tokenizer, max_length: int, folder: Path,
                 split_file: Path | None):
        self.table = table
        self.class_names = list(table.class_names)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.folder = Path(folder)
        self.split_file = split_file
        self.fingerprint = table.fingerprint()
        self.texts = table.texts()
        self._labels = table.labels()
        a = np.asarray(assignments)
        usable = self._labels >= 0
        self.indices = {s: np.flatnonzero(usable & (a == s)) for s in SPLITS}
        self.ids, self.lengths = encode(tokenizer, self.texts, self.max_length)
        self.collate = PadCollate(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    # what the engine and the techniques use (has_split, labels, refs: SplitItems)

    def split_texts(self, split: str) -> list[str]:
        return [self.texts[i] for i in self.indices[split]]

    def dataset(self, split: str, train: bool = False) -> TextDataset:
        return TextDataset(self.ids, self._labels, self.indices[split])

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {c: int((self.labels(s) == k).sum()) for k, c in enumerate(self.class_names)} for s in SPLITS}

    def truncation(self) -> dict:
        """How many texts the maximum length cuts, and the token lengths seen."""
        used = np.concatenate([self.indices[s] for s in SPLITS])
        lens = self.lengths[used] if len(used) else np.zeros(1, np.int64)
        cut = int((lens > self.max_length).sum())
        return {"max_length": self.max_length, "truncated": cut, "texts": int(len(used)),
                "truncated_share": cut / max(1, len(used)), "longest_tokens": int(lens.max()),
                "median_tokens": int(np.median(lens)), "p95_tokens": int(np.percentile(lens, 95))}

    def describe(self) -> dict:
        return {"reader": self.table.reader_id, "source": str(self.table.source), "fingerprint": self.fingerprint,
                "class_names": self.class_names, "model_folder": str(self.folder), "max_length": self.max_length,
                "truncation": self.truncation(), "split_counts": self.counts(), "report": self.table.report.to_dict(),
                **({"groups": self.groups} if getattr(self, "groups", None) else {})}


class LengthGroupedBatches(torch.utils.data.Sampler):
    """Shuffled batches of texts of similar length (less padding, much less compute): the
    order is shuffled, cut into pools of ``pool`` batches, each pool sorted by length and
    cut into batches, and the batches shuffled.  Seeded, so an epoch replays exactly."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, pool: int = 50):
        self.lengths, self.batch_size, self.seed, self.pool = np.asarray(lengths), int(batch_size), int(seed), pool

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(self.lengths))
        span = self.batch_size * self.pool
        batches = []
        for s in range(0, len(order), span):
            chunk = order[s:s + span]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        for k in rng.permutation(len(batches)):
            yield batches[k]


class TextInferenceData:
    """What prediction needs of a run's texts: classes, tokenizer, maximum length."""

    def __init__(self, class_names: list[str], tokenizer, max_length: int, folder: Path):
        self.class_names, self.tokenizer, self.max_length, self.folder = class_names, tokenizer, int(max_length), Path(folder)


def text_model_folder(ctx) -> Path:
    """The Hugging Face folder of the project's model (``model.architecture``: a folder path,
    or the name of a local folder; see :func:`tlstudio.core.models.huggingface.resolve_hf_folder`)."""
    from ..models.huggingface import resolve_hf_folder

    proj = ctx.project
    return resolve_hf_folder(proj.model.architecture, proj.base_dir, need_weights=proj.model.weights != "none")


def read_texts(ctx):
    """Read and check the project's texts with the text readers (plugins included)."""
    from ..data import read_data
    from ..data.text import TASK, check_trainable_texts

    proj = ctx.project
    if not proj.data.source:
        raise DataError("The project has no data yet: choose a CSV, TSV, JSONL file or a folder of "
                        "'sentence<TAB>label' files on the Data page (or give --data on the command line).")
    readers = (ctx.plugins.readers() if ctx.plugins else None) or None
    source = proj.resolve(proj.data.source)
    ctx.log(f"Reading {source} ...")
    table = read_data(source, proj.data.format, proj.data.options, readers, task=TASK)
    rep = table.report
    for w in rep.warnings:
        ctx.log(w, "warning")
    if rep.skipped:
        first = "; ".join(f"{s.ref}: {s.reason}" for s in rep.skipped[:3])
        ctx.log(f"{len(rep.skipped)} row(s) skipped ({first}{' ...' if len(rep.skipped) > 3 else ''}); "
                "`tlstudio validate-data --task text-classification` lists them all.", "warning")
    check_trainable_texts(table)
    return table


def prepare_text_data(ctx, max_length: int) -> TextData:
    """Read, check, split (stored, so re-runs use the same split) and tokenize the texts."""
    from ..data import split_counts
    from ..models.huggingface import load_tokenizer

    table = read_texts(ctx)
    assignments, split_file = stored_split(ctx, table)
    table.report.split_counts = split_counts(table, assignments)

    folder = text_model_folder(ctx)
    tokenizer = load_tokenizer(folder)
    limit = model_max_length(tokenizer, folder / "config.json")
    if limit and max_length > limit:
        ctx.log(f"The model takes at most {limit} tokens: the maximum length is {limit}, not {max_length}.", "warning")
        max_length = limit
    data = TextData(table, assignments, tokenizer, max_length, folder, split_file)
    from ..data.split import group_summary

    data.groups = group_summary(table, assignments)
    c = data.counts()
    ctx.log("Data: " + ", ".join(f"{s} {sum(c[s].values())}" for s in SPLITS) + f" texts, classes: {', '.join(data.class_names)}")
    t = data.truncation()
    if t["truncated"]:
        ctx.log(f"Truncation: {t['truncated']:,} of {t['texts']:,} texts ({100 * t['truncated_share']:.1f}%) are longer "
                f"than {max_length} tokens and are cut (longest {t['longest_tokens']}, 95% within {t['p95_tokens']}).",
                "warning")
    else:
        ctx.log(f"Truncation: none; every text fits in {max_length} tokens (longest {t['longest_tokens']}).")
    return data


# --- model --------------------------------------------------------------------------------------
class LogitsModel(torch.nn.Module):
    """(input_ids, attention_mask) -> logits: the plain signature of prediction and export."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def build_text_classifier(ctx):
    """The project's Hugging Face model with a new head for the data's classes and its layer
    groups (``model.groups``); pretrained weights from the local folder when training, the
    run's own config when only predicting (the checkpoint brings the weights)."""
    from ..models.huggingface import load_sequence_classifier, transformer_layer_groups

    pretrained = ctx.weights != "none"
    model, info = load_sequence_classifier(ctx.data.folder, ctx.class_names, pretrained=pretrained)
    tok = ctx.data.tokenizer
    if getattr(model.config, "pad_token_id", None) is None and tok.pad_token_id is not None:
        model.config.pad_token_id = tok.pad_token_id
    model.groups = transformer_layer_groups(model)
    ctx.model_info = {"folder": info["folder"], "model_type": info["model_type"]}
    if pretrained or getattr(ctx, "run", None) is not None:  # a run, not a prediction
        n_layers = len(model.groups) - 2
        ctx.log(f"Model: {info['model_type']} from {info['folder']} ({info['params_m']}M parameters, {n_layers} encoder "
                f"layers); " + (f"new, untrained: {', '.join(info['new_weights'][:6])}" if pretrained
                                else "random initialisation (weights = none)"))
        if ctx.run is not None:
            save_run_model_files(ctx.run.dir, model, tok)
    return model


def save_run_model_files(run_dir: Path, model, tokenizer) -> Path:
    """Keep the tokenizer and model config in the run folder (replaced atomically)."""
    dest = Path(run_dir) / RUN_MODEL_DIR
    tmp = Path(tempfile.mkdtemp(prefix=f".{RUN_MODEL_DIR}.", dir=str(run_dir)))
    try:
        tokenizer.save_pretrained(str(tmp))
        model.config.save_pretrained(str(tmp))
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# --- the task ------------------------------------------------------------------------------------
class TextClassificationTask(ClassifierTask):
    """Texts in, one class each out: data, loss, evaluation, prediction, explanation and
    export.  The technique's settings may set ``max_length`` (tokens; default 128)."""

    traits = TEXT_CLASSIFICATION
    default_monitor = "val_accuracy"
    headline = (("accuracy", "Test accuracy"), ("balanced_accuracy", "balanced accuracy"), ("auc", "AUC"))
    export_formats = ("onnx",)  # the model and its tokenizer files, run by onnxruntime

    def expand_inputs(self, inputs: list) -> list:
        return list(inputs)  # the texts themselves

    def max_length(self, ctx) -> int:
        return int(getattr(ctx.config, "max_length", 128))

    def prepare_data(self, ctx):
        return prepare_text_data(ctx, self.max_length(ctx))

    def train_batches(self, ctx, epoch: int):
        """Batches of texts of similar length (see :class:`LengthGroupedBatches`); the plain
        shuffled loader when the classes are balanced by sampling, or under torchrun (the
        engine's loader gives each process its share)."""
        if ctx.training.class_balance == "balanced_sampler" or getattr(ctx, "dist", None) is not None:
            return ctx.loader("train", train=True, epoch=epoch)
        ds = ctx.data.dataset("train", train=True)
        lengths = np.array([len(ctx.data.ids[i]) for i in ds.indices])
        batches = LengthGroupedBatches(lengths, ctx.training.batch_size, ctx.training.seed * 7919 + epoch)
        return torch.utils.data.DataLoader(ds, batch_sampler=batches, collate_fn=ctx.data.collate,
                                           num_workers=ctx.num_workers)

    def forward(self, ctx, x):
        return ctx.model(**x).logits

    def write_evaluation(self, ctx, split: str, metrics: dict) -> None:
        write_classifier_evaluation(ctx, split, metrics, {"text": list(ctx.data.split_texts(split))})

    def report(self, ctx, final: dict) -> str:
        return text_report_md(ctx.project, final, ctx.data)

    # --- prediction, explanation, export ------------------------------------------------------
    def load_for_inference(self, ctx, run_dir, checkpoint: dict) -> "TextInferenceData":
        from ..models.huggingface import load_tokenizer

        run_dir = Path(run_dir)
        try:
            desc = json.loads((run_dir / "data.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise StudioError(f"{run_dir}: data.json is missing: the run did not get as far as preparing its data.") from None
        folder = run_dir / RUN_MODEL_DIR
        if not (folder / "config.json").is_file():
            raise StudioError(f"{folder}: the run's tokenizer and model config are missing (the run did not get as far "
                              "as building its model).")
        from .classification import load_run_decision

        data = TextInferenceData(list(checkpoint.get("class_names") or desc["class_names"]), load_tokenizer(folder),
                                 int(desc.get("max_length", 128)), folder)
        load_run_decision(ctx, run_dir, data.class_names)
        return data

    def tokenize(self, ctx, texts: list[str]) -> dict:
        from ..models.huggingface import quiet_transformers

        with quiet_transformers():
            enc = ctx.data.tokenizer(texts, padding=True, truncation=True, max_length=ctx.data.max_length,
                                     return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    @torch.no_grad()
    def predict_texts(self, ctx, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities (N, K) of texts."""
        model = ctx.model.eval()
        out = []
        for i in range(0, len(texts), batch_size):
            x = {k: v.to(ctx.device) for k, v in self.tokenize(ctx, texts[i:i + batch_size]).items()}
            out.append(model(**x).logits.float().softmax(1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(ctx.data.class_names)), np.float32)

    def predict_inputs(self, ctx, inputs: list) -> list[dict]:
        """Sentences -> {"ref", "predicted", "probabilities"} (or {"ref", "error"} for an empty one)."""
        results, good = _sentences(inputs)
        if good:
            probs = self.predict_texts(ctx, [s for _, s in good])
            for (k, _), row in zip(good, ctx.scratch["decision"].results(probs)):
                results[k].update(row)
        return results

    def explain(self, ctx, text: str, target: int | str | None = None) -> dict:
        """Which words drove the prediction (see :func:`explain_text`): integrated gradients on
        the word embeddings for the predicted class (or ``target``), one score per word; a
        positive score pushes towards that class, a negative one away from it."""
        return explain_text(ctx.model, ctx.data.tokenizer, ctx.data.class_names, text, ctx.data.max_length,
                            ctx.device, target)

    def inference_model(self, ctx) -> Any:
        return LogitsModel(ctx.model)

    # --- export (any exporter; ONNX keeps the sequence length dynamic) --------------------------
    def export_inputs(self, ctx, n: int) -> tuple:
        """Up to ``n`` of the run's own test (else validation) texts, tokenized as in
        training and padded to the batch's longest: (input_ids, attention_mask)."""
        import csv

        texts, used = [], ""
        for split in ("test", "val"):
            f = Path(ctx.run_dir) / f"{split}_predictions.csv"
            if f.exists() and not texts:
                with open(f, newline="", encoding="utf-8") as fh:
                    texts = [r["text"] for r in csv.DictReader(fh) if r.get("text", "").strip()][: int(n)]
                used = split
        if len(texts) < 2:
            raise StudioError(f"{ctx.run_dir}: the run has no test or validation texts to check the export with.")
        enc = self.tokenize(ctx, texts)
        ctx.scratch["export_inputs_info"] = {"split": used, "n": len(texts), "kind": "texts",
                                             "source": str(Path(ctx.run_dir) / f"{used}_predictions.csv")}
        return enc["input_ids"], enc["attention_mask"]

    def export_spec(self, ctx) -> dict:
        from .classification import package_decision

        folder = Path(ctx.data.folder)
        files = {f.name: str(f) for f in sorted(folder.iterdir())
                 if f.is_file() and f.suffix in (".json", ".txt", ".model") and f.name != "config.json"}
        seq = {0: "batch", 1: "sequence"}
        return {
            "task": self.id, "inputs": ["input_ids", "attention_mask"], "outputs": ["logits"],
            "dynamic_axes": {"input_ids": seq, "attention_mask": seq}, "labels": list(ctx.data.class_names),
            "postprocess": "softmax", "files": files, **package_decision(ctx),
            "preprocessing": {"kind": "text", "tokenizer": "the Hugging Face tokenizer files in this folder",
                              "max_length": int(ctx.data.max_length), "padding": "pad each batch to its longest text",
                              "truncation": True, "inputs": ["input_ids", "attention_mask"],
                              "output": "logits (batch x classes); softmax gives the probabilities"},
        }

    def predict_package(self, package, inputs: list) -> list[dict]:
        """Sentences -> {"ref", "predicted", "probabilities"} with an exported model and the
        tokenizer files in its package."""
        from .classification import decision_of_package
        from ..models.huggingface import load_tokenizer, quiet_transformers

        dec = decision_of_package(package.spec)
        tok = load_tokenizer(package.folder)
        max_length = int(package.spec["preprocessing"]["max_length"])
        results, good = _sentences(inputs)
        for b in range(0, len(good), 32):
            chunk = good[b:b + 32]
            with quiet_transformers():
                enc = tok([t for _, t in chunk], padding=True, truncation=True, max_length=max_length,
                          return_tensors="np")
            logits = np.asarray(package.run_model([enc["input_ids"].astype(np.int64),
                                                   enc["attention_mask"].astype(np.int64)])[0], np.float64)
            for (k, _), row in zip(chunk, dec.results(torch.from_numpy(logits).softmax(1).numpy())):
                results[k].update(row)
        return results


def _sentences(inputs: list) -> tuple[list[dict], list[tuple[int, str]]]:
    """{"ref"} per input ({"ref", "error"} for an empty one), and the (index, text) of the others."""
    results: list[dict] = []
    good: list[tuple[int, str]] = []
    for t in inputs:
        s = "" if t is None else str(t)
        if not s.strip():
            results.append({"ref": s, "error": "empty text"})
        else:
            good.append((len(results), s))
            results.append({"ref": s})
    return results, good


# --- explanation ----------------------------------------------------------------------------------
def explain_text(model, tokenizer, class_names: list[str], text: str, max_length: int, device=None,
                 target: int | str | None = None, steps: int = EXPLAIN_STEPS) -> dict:
    """Which words of ``text`` drove the prediction: integrated gradients, that is gradient ×
    input averaged over ``steps`` points on the straight path from a blank text (every word
    embedding zero; [CLS]/[SEP] kept) to the text, for the log-probability of the predicted
    class (or ``target``), summed over each word's sub-word tokens.  The scores add up to how
    much the words move that log-probability; positive pushes towards the class.

    Plain gradient × input at the text alone says little once the model is confident (the
    gradient of a saturated probability vanishes); averaging along the path does not."""
    from ..models.huggingface import quiet_transformers

    device = device or next(model.parameters()).device
    fast = bool(getattr(tokenizer, "is_fast", False))
    with quiet_transformers():
        enc = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt", return_offsets_mapping=fast)
        full_len = len(tokenizer(text, truncation=False)["input_ids"])
    offsets = enc.pop("offset_mapping", None)
    word_ids = enc.word_ids(0) if fast else None
    ids = enc["input_ids"].to(device)
    mask = enc["attention_mask"].to(device)
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    words_at = torch.tensor([t not in special_ids for t in ids[0].tolist()], device=device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        probs = model(input_ids=ids, attention_mask=mask).logits.float().softmax(1)[0].cpu().numpy()
    k = int(probs.argmax()) if target is None else (class_names.index(target) if isinstance(target, str) else int(target))
    chunk = max(1, min(steps, 4096 // max(1, ids.shape[1])))
    total = None
    state: dict = {}

    def hook(_module, _inputs, output):
        e = output.detach()
        base = e * (~words_at).view(1, -1, 1)  # the blank text: word vectors zero, special tokens kept
        x = (base + state["alphas"].view(-1, 1, 1) * (e - base)).requires_grad_(True)
        state["x"], state["delta"] = x, (e - base)[0]
        return x

    handle = model.get_input_embeddings().register_forward_hook(hook)
    try:
        with torch.enable_grad():
            for start in range(0, steps, chunk):
                n = min(chunk, steps - start)
                state["alphas"] = (torch.arange(start, start + n, device=device, dtype=torch.float32) + 0.5) / steps
                logp = model(input_ids=ids.expand(n, -1), attention_mask=mask.expand(n, -1)).logits.float().log_softmax(1)
                grad, = torch.autograd.grad(logp[:, k].sum(), state["x"])
                g = grad.sum(0)
                total = g if total is None else total + g
    finally:
        handle.remove()
        model.train(was_training)
    scores = ((total / steps) * state["delta"]).sum(-1).detach().cpu().numpy()
    tok_ids = ids[0].tolist()
    words: list[dict] = []
    if word_ids is not None and offsets is not None:
        spans: dict[int, list[int]] = {}
        for t, w in enumerate(word_ids):
            if w is not None and tok_ids[t] not in special_ids:
                spans.setdefault(w, []).append(t)
        for w, toks in spans.items():
            start, end = int(offsets[0, toks[0], 0]), int(offsets[0, toks[-1], 1])
            words.append({"word": text[start:end], "start": start, "end": end, "score": float(scores[toks].sum())})
    else:
        for t, tid in enumerate(tok_ids):
            if tid not in special_ids:
                words.append({"word": tokenizer.convert_ids_to_tokens(tid), "start": None, "end": None,
                              "score": float(scores[t])})
    top = max((abs(w["score"]) for w in words), default=0.0) or 1.0
    for w in words:
        w["weight"] = w["score"] / top  # -1 .. 1, for colouring
    return {"text": text, "method": EXPLAIN_METHOD, "target": class_names[k], "predicted": class_names[int(probs.argmax())],
            "probabilities": {c: float(p) for c, p in zip(class_names, probs)}, "words": words,
            "truncated": full_len > max_length}


# --- report -------------------------------------------------------------------------------------
def text_report_md(project, final: dict, data: TextData | None) -> str:
    md = classification_report_md(project, final, None)
    if data is None:
        return md
    c = data.counts()
    t = data.truncation()
    lines = ["## Data", "", f"Source: `{data.table.source}` ({data.table.reader_id}); model folder `{data.folder}`.", "",
             "| split | " + " | ".join(data.class_names) + " |", "|---" * (len(data.class_names) + 1) + "|"]
    lines += [f"| {s} | " + " | ".join(str(c[s][k]) for k in data.class_names) + " |" for s in SPLITS]
    rep = data.table.report
    lines += ["", f"Maximum length {t['max_length']} tokens: {t['truncated']} of {t['texts']} texts truncated "
                  f"(median {t['median_tokens']} tokens, 95% within {t['p95_tokens']}, longest {t['longest_tokens']}).",
              f"Rows skipped: {len(rep.skipped)}; duplicated texts: {len(rep.duplicates)}.", "", ""]
    head, sep, rest = md.partition("## Test results")
    return head + "\n".join(lines) + sep + rest if sep else md + "\n" + "\n".join(lines)


def explain_sentence(predictor, text: str) -> dict:
    """The prediction of ``text`` with the words that drove it (the window calls it in a worker thread).  A task
    without ``explain`` gives the prediction alone (``words`` empty)."""
    task, ctx = predictor.task, predictor.ctx
    if hasattr(task, "explain"):
        with torch.enable_grad():
            out = dict(task.explain(ctx, text))
        out.setdefault("text", text)
        dec = ctx.scratch.get("decision")
        if dec is not None and out.get("probabilities"):  # the run's calibrated probabilities and its call
            names = list(dec.class_names)
            row = dec.results(np.array([[out["probabilities"][c] for c in names]]))[0]
            out.update(row)
        return out
    res = predictor.predict([text])[0]
    if res.get("error"):
        raise ValueError(res["error"])
    return {"text": text, "predicted": res["predicted"], "probabilities": res["probabilities"], "words": [],
            "method": "", "truncated": False}
