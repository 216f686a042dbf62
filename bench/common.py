"""Shared helpers of the bench scripts: which data, a fresh studio home, printing."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BREAST = REPO.parent / "shared" / "data" / "medmnist" / "breastmnist.npz"
SAMPLE = REPO / "resources" / "sample" / "digits"


def bench_data() -> tuple[Path, str]:
    """BreastMNIST where ../shared/data has it, else the bundled sample digits."""
    if BREAST.exists():
        return BREAST, "BreastMNIST (546/78/156, official split)"
    return SAMPLE, "sample digits (600 images, 10 classes)"


def fresh_home(name: str) -> Path:
    """A throw-away TLSTUDIO_HOME so that no earlier cache flatters a timing."""
    home = Path(tempfile.mkdtemp(prefix=f"tlbench-{name}-"))
    os.environ["TLSTUDIO_HOME"] = str(home)
    return home


def row(label: str, value: str) -> None:
    print(f"  {label:<44} {value}")
