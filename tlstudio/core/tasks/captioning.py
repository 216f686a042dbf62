"""Image captioning: the data of a run, the vocabulary, CNN-encoder / LSTM- or
Transformer-decoder building blocks, greedy and beam-search decoding, BLEU and CIDEr, and
the base class of captioning techniques.

The encoder is a pretrained ImageNet network of the model library; its last feature map
is pooled to a small ``grid`` x ``grid`` (2 x 2 keeps *where* things are: "a 3 left of a
7").  Decoders are trained with teacher forcing: the true previous word is the input at
every step, and the loss is cross-entropy on the next word.  Captions are generated word
by word, greedily or with a beam search.  BLEU-1..4 come from torchmetrics, CIDEr-D from
pycocoevalcap (the COCO caption evaluation's own implementation).
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .annotated import AnnotatedData, backbone_preprocessing, decoded_images, read_annotated, split_annotated
from ..errors import StudioError
from ..io import atomic_write_json, atomic_write_text
from .base import Task
from .traits import CAPTIONING
from .caption_model import (END, PAD, START, UNK, CaptionGenerator, CaptionModel, LSTMDecoder, SpatialEncoder,  # noqa: F401
                            TransformerCaptionDecoder, beam_decode, build_caption_model, caption_loss, greedy_decode)

SPLITS = ("train", "val", "test")
SPECIALS = ("<pad>", "<start>", "<end>", "<unk>")
_TOKEN = re.compile(r"\w+(?:'\w+)?", re.UNICODE)


# --- words -------------------------------------------------------------------------------------------------
def tokenize(text: str) -> list[str]:
    """Lower-case words (punctuation dropped, as the COCO caption evaluation does)."""
    return _TOKEN.findall(str(text).lower())


class Vocabulary:
    """Words seen at least ``min_count`` times in the training captions, after the special
    tokens <pad> (0), <start> (1), <end> (2) and <unk> (3, any other word)."""

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if tuple(words[:4]) != SPECIALS:
            words = [*SPECIALS, *(w for w in words if w not in SPECIALS)]
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, captions: Sequence[str], min_count: int = 1, max_size: int | None = None) -> "Vocabulary":
        counts = Counter(w for c in captions for w in tokenize(c))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        if max_size:
            kept = kept[: max(0, max_size - len(SPECIALS))]
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, max_length: int) -> list[int]:
        """<start> words <end>, cut to ``max_length`` tokens in all (the end token kept)."""
        ids = [self.index.get(w, UNK) for w in tokenize(text)][: max(0, max_length - 2)]
        return [START, *ids, END]

    def decode(self, ids: Sequence[int]) -> str:
        """Words up to the first <end>, special tokens left out."""
        out = []
        for i in ids:
            i = int(i)
            if i == END:
                break
            if i >= len(SPECIALS):
                out.append(self.words[i] if i < len(self.words) else SPECIALS[UNK])
            elif i == UNK:
                out.append(SPECIALS[UNK])
        return " ".join(out)

    def coverage(self, captions: Sequence[str]) -> float:
        """Share of the words of ``captions`` that the vocabulary knows."""
        words = [w for c in captions for w in tokenize(c)]
        return sum(w in self.index for w in words) / max(1, len(words))


# --- data --------------------------------------------------------------------------------------------------
class CaptionData(AnnotatedData):
    """Images (cached, ``size`` x ``size``) with their captions, and the vocabulary built
    on the training captions.  ``dataset(split)`` gives (normalised image, image number)
    for the encoder (and the feature cache); ``pairs(split)`` one (image number, caption
    tokens) pair per caption, for teacher forcing."""

    task = "captioning"

    def __init__(self, table, assignments, images, valid, size, mean, std, augmentation, split_file,
                 min_count: int = 1, max_length: int = 20, vocabulary: Vocabulary | None = None):
        super().__init__(table, assignments, images, valid, size, mean, std, augmentation, split_file)
        self.captions = [list(it.meta.get("captions", [])) for it in table.items]
        train_caps = [c for i in self.indices["train"] for c in self.captions[i]]
        self.vocabulary = vocabulary or Vocabulary.build(train_caps, min_count)
        self.max_length = max_length
        self.truncated = sum(len(tokenize(c)) + 2 > max_length for caps in self.captions for c in caps)
        self._transforms: dict[bool, Any] = {}

    def references(self, split: str) -> list[list[str]]:
        return [self.captions[i] for i in self.indices[split]]

    def pairs(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(row of the image within ``split`` (P,), tokens (P, T) padded with <pad>), T the
        longest encoded caption (at most ``max_length``)."""
        rows, toks = [], []
        for r, i in enumerate(self.indices[split]):
            for c in self.captions[i]:
                rows.append(r)
                toks.append(self.vocabulary.encode(c, self.max_length))
        if not rows:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, 2, dtype=torch.long)
        t = max(map(len, toks))
        return torch.tensor(rows), torch.tensor([ids + [PAD] * (t - len(ids)) for ids in toks])

    def transform(self, train: bool):
        """The classification transforms without flips: captions name left and right."""
        if train not in self._transforms:
            from ..data import make_transforms

            aug = self.augmentation.model_copy(update={"horizontal_flip": False, "vertical_flip": False})
            self._transforms[train] = make_transforms(aug, self.mean, self.std, self.size, train)
        return self._transforms[train]

    def dataset(self, split: str, train: bool = False):
        from ..data import ImageDataset

        idx = self.indices[split]
        rows = np.zeros(len(self.table.items), np.int64)
        rows[idx] = np.arange(len(idx))
        return ImageDataset(self.images, rows, idx, self.transform(train))

    def pair_dataset(self, split: str, train: bool = False):
        """(image, tokens) per caption: for training the encoder too."""
        rows, toks = self.pairs(split)
        return _PairDataset(self.dataset(split, train), rows, toks)

    def describe(self) -> dict:
        return {**super().describe(), "vocabulary": self.vocabulary.words, "max_length": self.max_length,
                "captions": {s: sum(len(c) for c in self.references(s)) for s in SPLITS}}


class _PairDataset(torch.utils.data.Dataset):
    def __init__(self, images, rows, tokens):
        self.images, self.rows, self.tokens = images, rows, tokens

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int):
        return self.images[int(self.rows[k])][0], self.tokens[k]


def prepare_caption_data(ctx, min_count: int = 1, max_length: int = 20) -> CaptionData:
    """Read, check and split the project's captioned images; build the vocabulary on the
    training captions; decode the images once into the cache."""
    table = read_annotated(ctx, "captioning")
    assignments, split_file = split_annotated(ctx, table)
    size, mean, std = backbone_preprocessing(ctx)
    images, valid = decoded_images(ctx, table, size)
    data = CaptionData(table, assignments, images, valid, size, mean, std, ctx.project.augmentation, split_file,
                       min_count=min_count, max_length=max_length)
    table.report.split_counts = {s: {"images": n} for s, n in data.split_sizes().items()}
    if data.truncated:
        ctx.log(f"{data.truncated} caption(s) are longer than {max_length - 2} words: cut to that length.", "warning")
    val = [c for caps in data.references("val") for c in caps]
    ctx.log("Data: " + ", ".join(f"{s} {len(data.indices[s])} images" for s in SPLITS)
            + f"; vocabulary {len(data.vocabulary)} words (min count {min_count})"
            + (f", covering {100 * data.vocabulary.coverage(val):.0f}% of the validation words" if val else ""))
    return data


class CaptionInferenceData:
    task = "captioning"
    class_names: list[str] = []

    def __init__(self, vocabulary: Vocabulary, size: int, mean, std, max_length: int):
        self.vocabulary, self.size, self.mean, self.std = vocabulary, int(size), tuple(mean), tuple(std)
        self.max_length = int(max_length)

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        from .classification import ImageInferenceData

        return ImageInferenceData([], self.size, self.mean, self.std).preprocess(images)


# --- metrics -----------------------------------------------------------------------------------------------
def cider_available() -> bool:
    try:
        import pycocoevalcap.cider.cider  # noqa: F401
    except ImportError:
        return False
    return True


def caption_metrics(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """Corpus BLEU-1..4 (torchmetrics) and CIDEr-D (pycocoevalcap, when installed) of
    generated captions against each image's reference captions (all lower-cased, words
    only).  Also ``cider_per_image``."""
    from torchmetrics.text import BLEUScore

    hyps = [" ".join(tokenize(h)) for h in hypotheses]
    refs = [[" ".join(tokenize(r)) for r in rs] for rs in references]
    if not hyps:
        return {"n": 0}
    out: dict[str, Any] = {"n": len(hyps)}
    for n in range(1, 5):
        out[f"bleu_{n}"] = float(BLEUScore(n_gram=n)(hyps, refs))
    if cider_available():
        from pycocoevalcap.cider.cider import Cider

        score, per = Cider().compute_score({i: refs[i] for i in range(len(hyps))},
                                           {i: [hyps[i] or "<empty>"] for i in range(len(hyps))})
        out["cider"] = float(score)
        out["cider_per_image"] = [float(v) for v in per]
    return out


# --- the task's base class ------------------------------------------------------------------------------------
class CaptioningTask(Task):
    """Image captioning: data (with the vocabulary), teacher-forced loss, decoding, BLEU/CIDEr
    evaluation, results and prediction.

    A technique's ``build`` returns a :class:`CaptionModel` (or a model with the same
    ``encoder`` / ``decoder`` / ``generate`` contract); its settings may define ``min_count``,
    ``max_length``, ``decoding`` ("greedy"/"beam") and ``beam_size``.  A frozen encoder's
    features can come from the feature cache: the technique hands them over with
    :meth:`use_features` ({split: features}) and batches become (rows, tokens)."""

    traits = CAPTIONING
    default_monitor = "val_bleu_4"
    headline = (("bleu_4", "Test BLEU-4"), ("cider", "CIDEr-D"))
    series = {"cider": "CIDEr-D (validation)"}

    def __init__(self):
        self.vocab_words: list[str] = []
        self.features: dict[str, torch.Tensor] = {}

    def _cfg(self, ctx, name: str, default):
        return getattr(ctx.config, name, default)

    def prepare_data(self, ctx):
        data = prepare_caption_data(ctx, int(self._cfg(ctx, "min_count", 1)), int(self._cfg(ctx, "max_length", 20)))
        self.vocab_words = list(data.vocabulary.words)
        return data

    def use_features(self, features: dict[str, torch.Tensor]) -> None:
        """Cached encoder features per split: training and evaluation read these instead of
        running the (frozen) encoder."""
        self.features = dict(features)

    # --- training ---------------------------------------------------------------------------------
    def train_batches(self, ctx, epoch: int):
        if self.features:
            rows, toks = ctx.data.pairs("train")
            return ctx.loader("train", train=True, epoch=epoch, dataset=torch.utils.data.TensorDataset(rows, toks))
        return ctx.loader("train", train=True, epoch=epoch, dataset=ctx.data.pair_dataset("train", train=True))

    def _feats(self, ctx, split: str, rows_or_images: torch.Tensor) -> torch.Tensor:
        if self.features:
            return self.features[split][rows_or_images.to(self.features[split].device)].to(ctx.device)
        return ctx.model.encoder(rows_or_images)

    def training_step(self, ctx, batch) -> dict:
        x, tokens = batch
        logits = ctx.model.decoder(self._feats(ctx, "train", x), tokens)
        return {"loss": caption_loss(logits, tokens, ctx.training.label_smoothing)}

    # --- evaluation -------------------------------------------------------------------------------
    def split_features(self, ctx, split: str) -> torch.Tensor:
        """Encoder features of every image of ``split`` (cached ones when there are)."""
        if self.features:
            return self.features[split].to(ctx.device)
        loader = ctx.loader(split, train=False, dataset=ctx.data.dataset(split, train=False), shuffle=False)
        feats = []
        with ctx.autocast():
            for x, _ in loader:
                feats.append(ctx.model.encoder(ctx.to_device(x)).float())
        return torch.cat(feats) if feats else torch.zeros(0)

    def decoding(self, ctx, final: bool) -> int:
        """Beam size to use: the configured decoding for the test and prediction, greedy
        for the per-epoch validation (quicker)."""
        if final and self._cfg(ctx, "decoding", "greedy") == "beam":
            return int(self._cfg(ctx, "beam_size", 3))
        return 1

    @torch.no_grad()
    def evaluate(self, ctx, split: str) -> dict:
        ctx.model.eval()
        data = ctx.data
        feats = self.split_features(ctx, split)
        rows, toks = data.pairs(split)
        losses = []
        bs = max(32, ctx.training.batch_size)
        with ctx.autocast():
            for a in range(0, len(rows), bs):
                f = feats[rows[a:a + bs].to(feats.device)]
                t = toks[a:a + bs].to(ctx.device)
                losses.append(float(caption_loss(ctx.model.decoder(f, t), t)) * len(t))
        beam = self.decoding(ctx, final=split == "test")
        ids: list[list[int]] = []
        for a in range(0, feats.shape[0], bs):
            ids += ctx.model.generate(feats[a:a + bs], data.max_length, beam)
        hyps = [data.vocabulary.decode(i) for i in ids]
        m = caption_metrics(hyps, data.references(split))
        m["loss"] = sum(losses) / max(1, len(rows))
        ctx.eval_details[split] = hyps
        return m

    def on_epoch_end(self, ctx, epoch: int, metrics: dict) -> dict:
        return {"cider": metrics["cider"]} if metrics.get("cider") is not None else {}

    def write_evaluation(self, ctx, split: str, metrics: dict) -> None:
        hyps = ctx.eval_details[split]
        refs = ctx.data.references(split)
        per = metrics.pop("cider_per_image", None) or [None] * len(hyps)
        images = [{"ref": r, "caption": h, "references": rs, "cider": c}
                  for r, h, rs, c in zip(ctx.data.refs(split), hyps, refs, per)]
        atomic_write_json(ctx.run.dir / f"{split}_predictions.json",
                          {"decoding": "beam" if self.decoding(ctx, True) > 1 else "greedy", "images": images})
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["image", "caption"])
        w.writerows([im["ref"], im["caption"]] for im in images)
        atomic_write_text(ctx.run.dir / f"{split}_predictions.csv", buf.getvalue())
        atomic_write_json(ctx.run.dir / f"evaluation_{split}.json", metrics)

    def report(self, ctx, final: dict) -> str:
        return caption_report_md(ctx.project, final, ctx.data, ctx.eval_details.get("test"))

    # --- prediction ---------------------------------------------------------------------------------
    def inference_model(self, ctx) -> nn.Module:
        """A plain nn.Module: normalised images -> greedy token ids (see CaptionGenerator)."""
        return CaptionGenerator(ctx.model, ctx.data.max_length)

    def load_for_inference(self, ctx, run_dir, checkpoint: dict) -> "CaptionInferenceData":
        try:
            desc = json.loads((Path(run_dir) / "data.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise StudioError(f"{run_dir}: data.json is missing: the run did not get as far as preparing its data.") from None
        if not self.vocab_words:  # a run from before tasks kept the vocabulary with the technique
            self.load_state_dict(checkpoint.get("technique") or {})
        words = self.vocab_words or desc.get("vocabulary")
        if not words:
            raise StudioError(f"{run_dir}: the run's vocabulary is missing (data.json has none).")
        return CaptionInferenceData(Vocabulary(words), desc["image_size"], desc["mean"], desc["std"],
                                    int(desc.get("max_length", self._cfg(ctx, "max_length", 20))))

    def predict_inputs(self, ctx, inputs: list) -> list[dict]:
        """Image paths -> {"ref", "predicted": the caption} (or {"ref", "error"})."""
        from ..data import decode_inputs

        results, good = decode_inputs(inputs)
        model = ctx.model.eval()
        beam = self.decoding(ctx, final=True)
        for a in range(0, len(good), 32):
            chunk = good[a:a + 32]
            x = ctx.data.preprocess([im for _, im in chunk]).to(ctx.device)
            with torch.no_grad():
                ids = model.generate(model.encoder(x), ctx.data.max_length, beam)
            for (k, _), i in zip(chunk, ids):
                results[k]["predicted"] = ctx.data.vocabulary.decode(i)
        return results

    def state_dict(self) -> dict:
        return {"vocabulary": json.dumps(self.vocab_words)} if self.vocab_words else {}

    def load_state_dict(self, state: dict) -> None:
        if state.get("vocabulary"):
            self.vocab_words = json.loads(state["vocabulary"])


def _fmt(v) -> str:
    return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def caption_report_md(project, final: dict, data: CaptionData | None, hyps: list[str] | None) -> str:
    t = final.get("test", {})
    lines = [f"# {project.name}: {final.get('technique')} on {final.get('model')}", "",
             f"Run `{final.get('run_id')}` on {final.get('device')}, {final.get('train_seconds', 0):.0f} s of training; "
             f"best epoch {final.get('best_epoch')} by {final.get('monitor')} = {_fmt(final.get('best_value'))}.", ""]
    if data is not None and hasattr(data, "vocabulary"):
        lines += ["## Data", "", f"Source: `{data.table.source}` ({data.table.reader_id}), images {data.size} px; "
                  f"vocabulary {len(data.vocabulary)} words.", "", "| split | images | captions |", "|---|---|---|"]
        lines += [f"| {s} | {len(data.indices[s])} | {sum(len(c) for c in data.references(s))} |" for s in SPLITS]
        lines.append("")
    if t:
        lines += ["## Test results", "", "| BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | CIDEr-D |", "|---|---|---|---|---|",
                  "| " + " | ".join(_fmt(t.get(k)) for k in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "cider")) + " |", ""]
    if hyps and data is not None and hasattr(data, "references"):
        lines += ["Examples (generated — references):", ""]
        for ref, h, rs in list(zip(data.refs("test"), hyps, data.references("test")))[:8]:
            lines.append(f"- `{Path(ref).name}`: **{h}** — {' / '.join(rs)}")
        lines.append("")
    lines += ["Repeat this run with:", "", f"    tlstudio train {Path(final.get('run_dir', '.')) / 'project.toml'}", ""]
    return "\n".join(lines)
