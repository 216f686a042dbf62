"""The captioning model: a pretrained CNN encoder's feature grid and a decoder (LSTM with
attention, or a small Transformer) that writes the caption word by word; greedy and beam
decoding; the teacher-forcing loss."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import StudioError

#: the vocabulary's special tokens, in the order of tlstudio.core.tasks.captioning.SPECIALS
PAD, START, END, UNK = range(4)


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
