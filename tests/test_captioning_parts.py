"""Captioning building blocks: vocabulary, teacher forcing, greedy vs beam search, BLEU and
CIDEr, and the exportable generator."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tlstudio.core.tasks.captioning import (END, PAD, START, UNK, CaptionGenerator, CaptionModel, LSTMDecoder,
                                      SpatialEncoder, TransformerCaptionDecoder, Vocabulary, beam_decode,
                                      caption_loss, caption_metrics, greedy_decode, tokenize)


def test_vocabulary_min_count_specials_and_round_trip():
    caps = ["A 3 left of a 7.", "a 7 right of a 3", "a 1 above a 3", "Zebra!"]
    v = Vocabulary.build(caps, min_count=2)
    assert v.words[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert v.words[4] == "a" and "zebra" not in v.index and "1" not in v.index  # seen once: <unk>
    ids = v.encode("a 1 left of a 3", max_length=20)
    assert ids[0] == START and ids[-1] == END and ids[2] == UNK
    assert v.decode(ids[1:]) == "a <unk> <unk> of a 3"  # "left" was seen once too
    assert v.decode([v.index["a"], END, v.index["3"]]) == "a"  # stops at <end>
    assert len(v.encode("a 3 left of a 7 and more words", max_length=5)) == 5
    assert tokenize("It's a 3, left-of a 7!") == ["it's", "a", "3", "left", "of", "a", "7"]
    assert v.coverage(["a 3 zebra"]) == pytest.approx(2 / 3)
    assert Vocabulary(v.words).index == v.index  # rebuilt from the stored word list


class TableDecoder(nn.Module):
    """A decoder whose next-word probabilities depend only on the previous word: greedy
    decoding is lured onto a path that beam search avoids."""

    def __init__(self, table: dict[int, dict[int, float]], vocab: int):
        super().__init__()
        self.logp = torch.full((vocab, vocab), -1e9)
        for prev, nxt in table.items():
            for w, p in nxt.items():
                self.logp[prev, w] = math.log(p)

    def start(self, feats):
        return torch.zeros(feats.shape[0])

    def step(self, state, prefix):
        return self.logp[prefix[:, -1]], state

    @staticmethod
    def select(state, idx):
        return state[idx]


def test_beam_search_finds_the_likelier_caption():
    A, B, C, D = 4, 5, 6, 7
    dec = TableDecoder({START: {A: 0.6, B: 0.4}, A: {C: 0.55, D: 0.45}, B: {END: 0.95, C: 0.05},
                        C: {END: 1.0}, D: {END: 1.0}}, 8)
    feats = torch.zeros(1, 1)
    assert greedy_decode(dec, feats, 10) == [[A, C]]  # p = 0.6 * 0.55 = 0.33
    assert beam_decode(dec, feats, 10, beam_size=2, length_penalty=0.0) == [B]  # p = 0.4 * 0.95 = 0.38
    assert beam_decode(dec, feats, 10, beam_size=1, length_penalty=0.0) == [A, C]


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread (and do not fight the other tests for cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_teacher_forcing_loss_ignores_padding_and_decoders_learn(one_thread):
    torch.manual_seed(0)
    feats = torch.randn(4, 8, 2, 2)
    tokens = torch.tensor([[START, 4, 5, END, PAD], [START, 6, 4, 7, END], [START, 5, END, PAD, PAD],
                           [START, 7, 7, 6, END]])
    for dec in (LSTMDecoder(8, 2, 9, embed=16, hidden=32, dropout=0.0),
                TransformerCaptionDecoder(8, 2, 9, d_model=16, heads=2, layers=1, dropout=0.0)):
        logits = dec(feats, tokens)
        assert logits.shape == (4, 5, 9)
        changed = logits.clone()
        changed[0, 3:] = 1e4  # predictions after the last word (at padding) do not count
        assert torch.allclose(caption_loss(changed, tokens), caption_loss(logits, tokens))
        opt = torch.optim.Adam(dec.parameters(), 2e-2)
        for _ in range(100):
            loss = caption_loss(dec(feats, tokens), tokens)
            opt.zero_grad()
            loss.backward()
            opt.step()
        dec.eval()
        out = greedy_decode(dec, feats, 6)
        assert out == [[4, 5], [6, 4, 7], [5], [7, 7, 6]], type(dec).__name__
        assert [beam_decode(dec, feats[i:i + 1], 6, 3) for i in range(4)] == out


def test_bleu_and_cider_rank_captions_like_a_reader():
    refs = [["a 3 left of a 7", "a 7 right of a 3"], ["a 1 above a 3", "a 3 below a 1"]]
    exact = caption_metrics(["a 3 left of a 7", "a 1 above a 3"], refs)
    close = caption_metrics(["a 3 left of a 1", "a 1 above a 7"], refs)
    wrong = caption_metrics(["seven", "three three"], refs)
    assert exact["bleu_4"] == pytest.approx(1.0) and exact["bleu_1"] == pytest.approx(1.0)
    assert exact["bleu_4"] > close["bleu_4"] > wrong["bleu_4"] == 0.0
    assert exact["cider"] > close["cider"] > wrong["cider"]
    assert len(exact["cider_per_image"]) == 2


def test_generator_is_a_plain_module_that_matches_greedy_decoding(one_thread):
    from tlstudio.core.models import ModelLibrary
    from tlstudio.core.tasks.captioning import build_caption_model

    torch.manual_seed(0)
    clf, _ = ModelLibrary().build("mobilenet_v2", 1, weights="none")
    model = build_caption_model(clf, "lstm", 12, grid=2, max_length=8, embed=16, hidden=32).eval()
    assert isinstance(model.encoder, SpatialEncoder) and model.encoder.channels == 1280
    x = torch.randn(3, 3, 64, 64)
    feats = model.encoder(x)
    assert feats.shape == (3, 1280, 2, 2)
    gen = CaptionGenerator(model, 8)
    assert isinstance(gen, nn.Module) and isinstance(model, CaptionModel)
    ids = gen(x)
    assert ids.shape == (3, 7) and ids.dtype == torch.long
    greedy = model.generate(feats, 8, beam_size=1)
    for row, g in zip(ids.tolist(), greedy):
        cut = row.index(END) if END in row else len(row)
        assert row[:cut] == g
