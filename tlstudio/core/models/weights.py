"""Reading weight files safely: safetensors, or ``torch.load(weights_only=True)``; hash
checks for torchvision-style names (``<stem>-<sha256 prefix>.pth``); state-dict diffs."""
from __future__ import annotations

import pickle
import re
import struct
import threading
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import ModelError
from ..io import sha256_file

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth?$")
_FOLDER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # loadable files of a Hugging Face folder
_sha_cache: dict[tuple[str, int, int], str] = {}
_sha_lock = threading.Lock()


def weights_file(path: str | Path) -> Path:
    """The file that holds the tensors: ``path`` itself, or the weights inside a Hugging Face folder."""
    path = Path(path)
    if path.is_dir():
        for name in _FOLDER_WEIGHTS:
            if (path / name).is_file():
                return path / name
        raise ModelError(f"{path}: a folder without {' or '.join(_FOLDER_WEIGHTS)}")
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file")
    return path


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) for this process."""
    path = weights_file(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _sha_lock:
        known = _sha_cache.get(key)
    if known is None:
        known = sha256_file(path)
        with _sha_lock:
            _sha_cache[key] = known
    return known


def verified_sha256(path: str | Path) -> str:
    """sha256 of the file, after checking it against the hash its name carries, if any."""
    sha = file_sha256(path)
    m = _HASH_IN_NAME.search(Path(path).name)
    if m and not sha.startswith(m.group(1)):
        raise ModelError(f"{path}: its contents do not match the hash in its name ({m.group(1)}): "
                         "the file is damaged or not the original")
    return sha


def is_safetensors(path: Path) -> bool:
    """A safetensors file starts with the length of its JSON header, then '{'."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and n + 8 <= path.stat().st_size


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict without running code from the file.  Unwraps ``{"state_dict": ...}``
    and ``{"model": ...}`` checkpoints and a DataParallel ``module.`` prefix."""
    path = weights_file(path)
    try:
        if is_safetensors(path):
            obj = load_file(path, device="cpu")
        else:
            with open(path, "rb") as f:
                magic = f.read(4)
            if not (magic.startswith(b"PK\x03\x04") or magic.startswith(b"\x80")):  # zip (torch.save) or pickle
                raise ModelError(f"{path}: not a weights file (expected a .safetensors file or a PyTorch .pth/.pt file)")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except ModelError:
        raise
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            raise ModelError(f"{path}: refused to load: unsafe or not a plain weights file (it holds Python objects "
                             "or code besides tensors). Save a plain state dict, ideally as .safetensors.") from None
        raise ModelError(f"{path}: not a readable weights file ({_first_line(e)})") from None
    except Exception as e:  # damaged zip, truncated file, bad safetensors header ...
        raise ModelError(f"{path}: not a readable weights file, damaged or of another kind ({_first_line(e)})") from None
    return _plain_state_dict(obj, path)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _plain_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path}: holds no state dict (a mapping of layer names to tensors)")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def complete_state_dict(sd: dict, shapes: dict) -> dict:
    """Add BatchNorm's ``num_batches_tracked`` counters that old files lack (as PyTorch does)."""
    missing = [k for k in shapes if k.endswith("num_batches_tracked") and k not in sd]
    return {**sd, **{k: torch.tensor(0, dtype=torch.long) for k in missing}} if missing else sd


def state_dict_diff(sd: dict, shapes: dict) -> str:
    """'' when ``sd`` has exactly the keys and shapes of ``shapes``; else a short summary."""
    missing = [k for k in shapes if k not in sd]
    unexpected = [k for k in sd if k not in shapes]
    reshaped = [f"{k} {tuple(sd[k].shape)} vs {shapes[k]}" for k in sd if k in shapes and tuple(sd[k].shape) != shapes[k]]
    parts = [_few(n, what, items) for n, what, items in (
        (len(missing), "missing key", missing), (len(unexpected), "unexpected key", unexpected),
        (len(reshaped), "key with another shape (file vs model)", reshaped)) if n]
    return "; ".join(parts)


def _few(n: int, what: str, items: list[str]) -> str:
    noun = what if n == 1 else what.replace("key", "keys", 1)
    return f"{n} {noun} e.g. {', '.join(items[:3])}"
