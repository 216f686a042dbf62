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
import math
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

SPLITS = ("train", "val", "test")
SPECIALS = ("<pad>", "<start>", "<end>", "<unk>")
PAD, START, END, UNK = range(4)
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
        from ..classification import ImageInferenceData

        return ImageInferenceData([], self.size, self.mean, self.std).preprocess(images)


# --- model -------------------------------------------------------------------------------------------------
class SpatialEncoder(nn.Module):
    """A pretrained backbone's last feature map, average-pooled to ``grid`` x ``grid``:
    images (N, 3, H, W) -> features (N, C, grid, grid)."""

    def __init__(self, backbone: nn.Module, cam_layer: nn.Module, channels: int, grid: int = 2):
        super().__init__()
        self.backbone, self.grid, self.channels = backbone, int(grid), int(channels)
        object.__setattr__(self, "_layer", cam_layer)
        self._maps: list[torch.Tensor] = []
        cam_layer.register_forward_hook(lambda m, i, o: self._maps.append(o))

    @classmethod
    def from_classifier(cls, model, grid: int = 2) -> "SpatialEncoder":
        """From a :class:`tlstudio.core.models.ClassifierModel` (its backbone and Grad-CAM layer)."""
        was = model.training
        model.eval()
        maps: list = []
        h = model.cam_layer.register_forward_hook(lambda m, i, o: maps.append(o))
        with torch.no_grad():
            model.backbone(torch.zeros(1, 3, 64, 64))
        h.remove()
        model.train(was)
        return cls(model.backbone, model.cam_layer, _as_map(maps[-1]).shape[1], grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._maps.clear()
        self.backbone(x)
        fmap = _as_map(self._maps[-1])
        self._maps.clear()
        return nn.functional.adaptive_avg_pool2d(fmap, self.grid)


def _as_map(o: torch.Tensor) -> torch.Tensor:
    """A feature map (N, C, h, w) from a layer's output (ViT tokens (N, 1 + h*w, C) too)."""
    if o.dim() == 4:
        return o
    if o.dim() == 3:
        tokens = o[:, 1:, :]
        side = int(math.isqrt(tokens.shape[1]))
        return tokens[:, : side * side].transpose(1, 2).reshape(o.shape[0], o.shape[2], side, side)
    raise StudioError(f"the encoder's feature layer gives a {o.dim()}-d output: a feature map was expected")


class LSTMDecoder(nn.Module):
    """Embedding + LSTM (the classic "show and tell" decoder): the image features set the
    LSTM's first hidden and cell state; each step reads a word and predicts the next."""

    kind = "lstm"

    def __init__(self, channels: int, grid: int, vocab_size: int, embed: int = 256, hidden: int = 512,
                 layers: int = 1, dropout: float = 0.3):
        super().__init__()
        feat = channels * grid * grid
        self.layers, self.hidden = layers, hidden
        self.drop = nn.Dropout(dropout)
        self.init_h = nn.Linear(feat, layers * hidden)
        self.init_c = nn.Linear(feat, layers * hidden)
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=PAD)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, vocab_size)

    def start(self, feats: torch.Tensor):
        f = self.drop(feats.flatten(1))
        n = f.shape[0]
        h = torch.tanh(self.init_h(f)).view(n, self.layers, self.hidden).transpose(0, 1).contiguous()
        c = self.init_c(f).view(n, self.layers, self.hidden).transpose(0, 1).contiguous()
        return h, c

    def forward(self, feats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits (N, T, V) for the words after each of ``tokens`` (N, T)."""
        y, _ = self.lstm(self.drop(self.embed(tokens)), self.start(feats))
        return self.out(self.drop(y))

    def step(self, state, prefix: torch.Tensor):
        """Logits of the next word after ``prefix`` (N, t), and the new state."""
        y, state = self.lstm(self.embed(prefix[:, -1:]), state)
        return self.out(y[:, -1]), state

    @staticmethod
    def select(state, idx: torch.Tensor):
        return state[0][:, idx], state[1][:, idx]


class TransformerCaptionDecoder(nn.Module):
    """A small Transformer decoder: words attend to earlier words (causal mask) and to the
    grid of image features (one memory token per grid cell, with a learned position)."""

    kind = "transformer"

    def __init__(self, channels: int, grid: int, vocab_size: int, d_model: int = 256, heads: int = 4,
                 layers: int = 2, dropout: float = 0.1, max_length: int = 64):
        super().__init__()
        self.memory = nn.Linear(channels, d_model)
        self.memory_pos = nn.Parameter(torch.zeros(grid * grid, d_model))
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.pos = nn.Embedding(max_length, d_model)
        layer = nn.TransformerDecoderLayer(d_model, heads, 4 * d_model, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)
        nn.init.normal_(self.memory_pos, std=0.02)

    def start(self, feats: torch.Tensor):
        return self.memory(feats.flatten(2).transpose(1, 2)) + self.memory_pos

    def forward(self, feats: torch.Tensor, tokens: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        memory = self.start(feats) if memory is None else memory
        t = tokens.shape[1]
        x = self.embed(tokens) + self.pos(torch.arange(t, device=tokens.device))
        mask = torch.ones(t, t, dtype=torch.bool, device=tokens.device).triu(1)  # True: may not look
        y = self.decoder(x, memory, tgt_mask=mask, tgt_is_causal=True, tgt_key_padding_mask=tokens == PAD)
        return self.out(self.norm(y))

    def step(self, memory, prefix: torch.Tensor):
        return self.forward(None, prefix, memory)[:, -1], memory

    @staticmethod
    def select(memory, idx: torch.Tensor):
        return memory[idx]


class CaptionModel(nn.Module):
    """Encoder (pretrained CNN -> feature grid) + decoder.  ``forward(images, tokens)``
    gives teacher-forced logits; :meth:`generate` writes captions (token ids)."""

    def __init__(self, encoder: SpatialEncoder, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(images), tokens)

    @torch.no_grad()
    def generate(self, feats: torch.Tensor, max_length: int, beam_size: int = 1, length_penalty: float = 0.7) -> list[list[int]]:
        """Token ids per image (without <start>/<end>) from encoder features."""
        if beam_size <= 1:
            return greedy_decode(self.decoder, feats, max_length)
        return [beam_decode(self.decoder, feats[i:i + 1], max_length, beam_size, length_penalty)
                for i in range(feats.shape[0])]


class CaptionGenerator(nn.Module):
    """The exportable captioner: images (N, 3, S, S), normalised -> greedy token ids
    (N, max_length - 1), <end> then <pad> after the caption.  A plain nn.Module."""

    def __init__(self, model: CaptionModel, max_length: int):
        super().__init__()
        self.model, self.max_length = model, int(max_length)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.model.encoder(images)
        dec = self.model.decoder
        n = images.shape[0]
        prefix = torch.full((n, 1), START, dtype=torch.long, device=images.device)
        state = dec.start(feats)
        done = torch.zeros(n, dtype=torch.bool, device=images.device)
        for _ in range(self.max_length - 1):
            logits, state = dec.step(state, prefix)
            nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
            done = done | (nxt == END)
            prefix = torch.cat([prefix, nxt[:, None]], 1)
        return prefix[:, 1:]


def greedy_decode(decoder, feats: torch.Tensor, max_length: int) -> list[list[int]]:
    """The most likely next word at every step, for a batch."""
    n = feats.shape[0]
    prefix = torch.full((n, 1), START, dtype=torch.long, device=feats.device)
    state = decoder.start(feats)
    done = torch.zeros(n, dtype=torch.bool, device=feats.device)
    for _ in range(max_length - 1):
        logits, state = decoder.step(state, prefix)
        nxt = logits.argmax(-1)
        done = done | (nxt == END)
        prefix = torch.cat([prefix, nxt[:, None]], 1)
        if bool(done.all()):
            break
    return [_strip(row) for row in prefix[:, 1:].tolist()]


def beam_decode(decoder, feats: torch.Tensor, max_length: int, beam_size: int = 3,
                length_penalty: float = 0.7) -> list[int]:
    """Beam search for one image: keep the ``beam_size`` best partial captions by total
    log-probability; finished captions are ranked by log-probability / length**penalty."""
    state = decoder.start(feats)
    state = decoder.select(state, torch.zeros(1, dtype=torch.long, device=feats.device))
    prefix = torch.full((1, 1), START, dtype=torch.long, device=feats.device)
    scores = torch.zeros(1, device=feats.device)
    finished: list[tuple[float, list[int]]] = []
    for t in range(max_length - 1):
        logits, state = decoder.step(state, prefix)
        logp = torch.log_softmax(logits.float(), -1)
        logp[:, PAD] = -math.inf
        logp[:, START] = -math.inf
        total = (scores[:, None] + logp).view(-1)
        k = min(beam_size, int(torch.isfinite(total).sum()))
        best, flat = total.topk(k)
        vocab = logp.shape[1]
        src, word = flat // vocab, flat % vocab
        keep = []
        for b, (s, w, v) in enumerate(zip(src.tolist(), word.tolist(), best.tolist())):
            if w == END or t == max_length - 2:
                seq = prefix[s, 1:].tolist() + ([] if w == END else [w])
                finished.append((v / max(1, len(seq) + 1) ** length_penalty, seq))
            else:
                keep.append(b)
        if not keep or len(finished) >= beam_size:
            break
        keep_t = torch.tensor(keep, device=feats.device)
        state = decoder.select(state, src[keep_t])
        prefix = torch.cat([prefix[src[keep_t]], word[keep_t, None]], 1)
        scores = best[keep_t]
    if not finished:  # pragma: no cover - max_length >= 2 always finishes
        return []
    return _strip(max(finished, key=lambda f: f[0])[1])


def _strip(ids: list[int]) -> list[int]:
    out = []
    for i in ids:
        if i == END:
            break
        if i != PAD:
            out.append(int(i))
    return out


def build_caption_model(encoder_model, decoder: str, vocab_size: int, grid: int, max_length: int, *,
                        embed: int = 256, hidden: int = 512, layers: int = 1, dropout: float = 0.3,
                        heads: int = 4) -> CaptionModel:
    """A :class:`CaptionModel` from a library ClassifierModel (pretrained backbone) and a
    decoder kind: "lstm" (embedding + LSTM) or "transformer"."""
    enc = SpatialEncoder.from_classifier(encoder_model, grid)
    if decoder == "lstm":
        dec = LSTMDecoder(enc.channels, grid, vocab_size, embed, hidden, layers, dropout)
    elif decoder == "transformer":
        dec = TransformerCaptionDecoder(enc.channels, grid, vocab_size, embed, heads, layers, min(dropout, 0.3),
                                        max_length + 1)
    else:
        raise StudioError(f"unknown caption decoder '{decoder}' (known: lstm, transformer)")
    return CaptionModel(enc, dec)


def caption_loss(logits: torch.Tensor, tokens: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Teacher forcing: logits of positions 0..T-2 against the words 1..T-1 (padding ignored)."""
    return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                       tokens[:, 1:].reshape(-1), ignore_index=PAD, label_smoothing=label_smoothing)


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

    id = "captioning"
    title = "Image captioning"
    description = "Images with one or more sentences describing each: COCO captions JSON or Karpathy-split JSON."
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
