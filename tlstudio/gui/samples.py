"""The sample projects that come with the studio (File › Open sample, ``--sample NAME``).

A sample opens as an unsaved copy whose data paths point at the sample's files, so that
trying things never changes the sample itself (nor its stored split); Save asks where the
project should go."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import tlstudio


@dataclass(frozen=True)
class Sample:
    key: str
    title: str
    description: str
    relative: str  # project.toml, relative to a resources folder


SAMPLES = [
    Sample("breast-ultrasound", "Breast ultrasound (BreastMNIST)",
           "780 breast ultrasound images, malignant or normal/benign, with the data set's own split: the studio's "
           "recommended recipe on real medical images (CC BY 4.0).", "samples/breast-ultrasound/project.toml"),
    Sample("digits", "Handwritten digits (MNIST)",
           "600 handwritten digits in ten class folders: a quick first run (CC BY-SA 3.0).", "sample/project.toml"),
]


def resource_roots() -> list[Path]:
    """Where the samples may lie: the source checkout, a PyInstaller build, an installed bundle."""
    roots = [Path(tlstudio.__file__).resolve().parents[1] / "resources"]
    meipass = getattr(sys, "_MEIPASS", None)
    if meipass:
        roots.append(Path(meipass) / "resources")
    roots.append(Path(sys.prefix) / "share" / "tlstudio")
    return roots


def sample_path(sample: Sample) -> Path | None:
    for root in resource_roots():
        p = root / sample.relative
        if p.is_file():
            return p
    return None


def available() -> list[tuple[Sample, Path]]:
    return [(s, p) for s in SAMPLES if (p := sample_path(s)) is not None]


def find(key: str) -> tuple[Sample, Path]:
    for s, p in available():
        if key in (s.key, s.title):
            return s, p
    known = ", ".join(s.key for s, _ in available()) or "none found"
    raise KeyError(f"no sample called '{key}' (samples: {known})")


def load_copy(path: Path):
    """The sample's project with absolute paths and no file of its own (Save asks where)."""
    from tlstudio.core.config import load_project

    p = load_project(path).with_absolute_paths()
    p._path = None
    p.data.split.file = ""  # the split is stored with the runs (the cache), never written into the sample
    return p
