"""Helpers of the text tests: tiny randomly initialised Hugging Face model folders (BERT,
DistilBERT, RoBERTa, each with its own real tokenizer trained on a few sentences) and a
small keyword data set that such a tiny model learns in a few epochs."""
from __future__ import annotations

import random
from pathlib import Path

POSITIVE = ["great", "excellent", "wonderful", "love", "perfect", "superb"]
NEGATIVE = ["awful", "terrible", "horrible", "hate", "broken", "useless"]
NOUNS = ["phone", "battery", "film", "service", "meal", "screen", "plot", "waiter", "case", "sound"]
FILLER = ["the", "this", "a", "my", "really", "was", "is", "so", "quite", "and", "it", "very", "overall"]


def keyword_sentences(n_per_class: int = 60, seed: int = 0) -> list[tuple[str, str]]:
    """Sentences whose class is given by one sentiment word among neutral ones."""
    rng = random.Random(seed)
    out = []
    for label, words in (("positive", POSITIVE), ("negative", NEGATIVE)):
        for _ in range(n_per_class):
            parts = rng.sample(FILLER, 3) + [rng.choice(NOUNS)] + rng.sample(FILLER, 2)
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(words))
            out.append((" ".join(parts).capitalize() + ".", label))
    rng.shuffle(out)
    return out


def write_uci(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{t}\t{1 if y == 'positive' else 0}\n" for t, y in rows), encoding="utf-8")
    return path


def _corpus() -> list[str]:
    return [t for t, _ in keyword_sentences(80, seed=1)] + ["Some other words: hello world, quick brown fox."]


def make_tiny_model(folder: Path, kind: str = "bert", layers: int = 3, hidden: int = 32) -> Path:
    """A randomly initialised ``kind`` (bert, distilbert, roberta) base model saved as a
    Hugging Face folder with a tokenizer of its own family."""
    import torch
    from transformers import AutoModel, BertConfig, DistilBertConfig, RobertaConfig

    folder.mkdir(parents=True, exist_ok=True)
    if kind in ("bert", "distilbert"):
        from tokenizers import BertWordPieceTokenizer
        from transformers import BertTokenizerFast

        wp = BertWordPieceTokenizer(lowercase=True)
        wp.train_from_iterator(_corpus(), vocab_size=400, min_frequency=1)
        wp.save_model(str(folder))
        tok = BertTokenizerFast(str(folder / "vocab.txt"), do_lower_case=True, model_max_length=128)
    elif kind == "roberta":
        from tokenizers import ByteLevelBPETokenizer
        from transformers import RobertaTokenizerFast

        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(_corpus(), vocab_size=400, min_frequency=1,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        bpe.save_model(str(folder))
        tok = RobertaTokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=128)
    else:
        raise ValueError(kind)
    tok.save_pretrained(str(folder))
    v = len(tok)
    if kind == "bert":
        cfg = BertConfig(vocab_size=v, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=2 * hidden, max_position_embeddings=128)
    elif kind == "distilbert":
        cfg = DistilBertConfig(vocab_size=v, dim=hidden, n_layers=layers, n_heads=2, hidden_dim=2 * hidden,
                               max_position_embeddings=128)
    else:
        cfg = RobertaConfig(vocab_size=v, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                            intermediate_size=2 * hidden, max_position_embeddings=130, pad_token_id=tok.pad_token_id,
                            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    AutoModel.from_config(cfg).save_pretrained(str(folder))
    return folder


def text_project(data: Path, model: str | Path, epochs: int = 2, fmt: str = "auto", options: dict | None = None,
                 settings: dict | None = None, **training):
    """A small, fast text project over ``data`` (CPU)."""
    from tlstudio.core.config import Project

    p = Project(name="text-test", task="text-classification")
    p.data.source = str(data)
    p.data.format = fmt
    p.data.options = dict(options if options is not None else {"label_names": {"0": "negative", "1": "positive"}})
    p.data.split.mode = "stratified"
    p.data.split.val_fraction = 0.2
    p.data.split.test_fraction = 0.2
    p.model.architecture = str(model)
    p.technique.id = "bert-text-classification"
    p.technique.settings = {"max_length": 32, **(settings or {})}
    p.training.epochs = epochs
    p.training.batch_size = training.pop("batch_size", 16)
    p.training.lr = training.pop("lr", 1e-3)
    p.training.schedule = training.pop("schedule", "linear")
    p.training.warmup_epochs = training.pop("warmup_epochs", 0.0)
    p.training.weight_decay = training.pop("weight_decay", 0.01)
    p.training.device = "cpu"
    p.training.threads = training.pop("threads", 1)  # tiny models: one thread is quickest on a shared machine
    for k, v in training.items():
        setattr(p.training, k, v)
    return p
