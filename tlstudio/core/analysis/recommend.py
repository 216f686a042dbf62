"""Which pretrained model to fine-tune: measured on this machine, not guessed.

``measure_speed`` times real fine-tuning steps (forward, backward, optimizer step) of a
catalog model on random images; ``speed_of`` remembers each figure in the user's settings
(``Settings.model_speed``, one entry per architecture, image size and device kind) so a
model is timed once per machine; ``recommend`` ranks the models whose weights are present
offline by what fits the time budget and what accuracy the data can pay for, each with a
one-sentence reason (the article's ``select_pretrained_model``, grounded in measurements).

    from tlstudio.core.analysis.recommend import recommend
    for r in recommend(n_images=546, n_classes=2, image_size=128, device="cpu",
                       time_budget_s=180, measure=True):
        print(r.name, r.score, r.reason)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

#: epochs a fine-tuning run needs to get most of the way (the recommended recipes use 6-10)
TARGET_EPOCHS = 8
#: fewer epochs than this in the budget and a model is marked as not fitting
MIN_EPOCHS = 3
#: evaluating the validation split costs about this share of a training epoch's time per image
EVAL_COST = 0.35


def _device(device) -> torch.device:
    from ..engine import select_device

    if isinstance(device, torch.device):
        return device
    return select_device(device or "auto")


def device_kind(device="auto") -> str:
    """A short, stable name of the device a speed was measured on ("cpu-2t",
    "cuda-NVIDIA H100 80GB HBM3", "mps"): CPU speeds depend on the thread count."""
    dev = _device(device)
    if dev.type == "cuda":
        return f"cuda-{torch.cuda.get_device_name(dev)}"
    if dev.type == "cpu":
        return f"cpu-{torch.get_num_threads()}t"
    return dev.type


def _speed_key(arch_name: str, image_size: int, device) -> str:
    return f"{arch_name}@{int(image_size)}px/{device_kind(device)}"


def _effective_size(arch, image_size: int) -> int:
    pre = arch.preprocessing
    return pre.image_size if pre.fixed_size else int(image_size)


def measure_speed(arch_name: str, image_size: int = 128, batch_size: int = 16, device="auto", library=None,
                  warmup: int = 2, steps: int = 4) -> float:
    """Fine-tuning training speed of ``arch_name`` in images per second on ``device``.

    The catalog model is built with random weights (``weights="none"``: the speed does not
    depend on them, and nothing has to be present), every layer trains, AdamW steps.  A few
    warm-up steps are left out; then ``steps`` timed steps of ``batch_size`` random images
    of ``image_size`` pixels (a model with a fixed input size uses its own).
    """
    from ..models import ModelLibrary

    library = library or ModelLibrary()
    arch = library.arch(arch_name)
    dev = _device(device)
    size = _effective_size(arch, image_size)
    model, _ = library.build(arch_name, num_classes=2, weights="none")
    model = model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, size, size, generator=gen).to(dev)
    y = torch.randint(0, 2, (batch_size,), generator=gen).to(dev)
    amp = dev.type == "cuda"
    dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16

    def step() -> None:
        with torch.autocast(device_type=dev.type, dtype=dtype, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for _ in range(max(1, warmup)):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(max(1, steps)):
        step()
    sync()
    elapsed = time.perf_counter() - t0
    return batch_size * max(1, steps) / max(elapsed, 1e-9)


def speed_of(arch_name: str, image_size: int, device="auto", measure: bool = False, library=None) -> float | None:
    """The remembered fine-tuning speed (images/s) of ``arch_name`` at ``image_size`` on
    this kind of device; with ``measure`` an unknown one is measured now and remembered
    (saved in the settings).  None when unknown and not measured."""
    from ..settings import load_settings, save_settings

    if library is not None:
        arch = library.arch(arch_name)
    else:
        from ..models import CATALOG

        arch = CATALOG.get(arch_name)
    size = _effective_size(arch, image_size) if arch is not None else int(image_size)
    key = _speed_key(arch_name, size, device)
    settings = load_settings()
    known = settings.model_speed.get(key)
    if known is not None or not measure:
        return known
    value = measure_speed(arch_name, size, device=device, library=library)
    settings = load_settings()  # re-read: another window may have saved meanwhile
    settings.model_speed[key] = round(float(value), 3)
    save_settings(settings)
    return value


def forget_speeds() -> int:
    """Drop every remembered speed (after a hardware change); returns how many there were."""
    from ..settings import load_settings, save_settings

    s = load_settings()
    n = len(s.model_speed)
    s.model_speed = {}
    save_settings(s)
    return n


@dataclass
class Recommendation:
    """One ready model, ranked."""

    name: str
    score: float
    reason: str
    est_seconds_per_epoch: float | None  # None: speed not measured yet
    title: str = ""
    images_per_s: float | None = None
    imagenet_top1: float | None = None
    params_m: float = 0.0
    epochs_in_budget: float | None = None
    fits_budget: bool | None = None  # None: unknown (not measured)
    image_size: int = 0
    details: dict = field(default_factory=dict)


def _capacity_weight(n_images: int, n_classes: int) -> float:
    """How much extra ImageNet accuracy (capacity) pays on this data: little with a few
    hundred images (a big network mostly overfits them), fully from about ten thousand or
    with many classes."""
    w = math.log10(max(10, n_images)) / 5 + math.log10(max(2, n_classes)) / 10
    return min(1.0, max(0.2, w))


def _fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def recommend(n_images: int, n_classes: int, image_size: int, device="auto", time_budget_s: float = 600.0,
              library=None, measure: bool = False, epochs: int = TARGET_EPOCHS) -> list[Recommendation]:
    """Rank the models whose weights are present offline for fine-tuning on ``n_images``
    training images of ``n_classes`` classes at ``image_size`` px within ``time_budget_s``.

    Score = expected accuracy (ImageNet top-1 as the prior, weighted by how much capacity
    this data size can use, minus an overfitting charge for many parameters per image)
    + a time term (log of the share of ``epochs`` epochs that fits the budget, measured
    speed).  Models whose speed is unknown (``measure=False`` and never measured here) are
    ranked by the accuracy prior alone, after the measured ones, and say so.
    """
    from ..models import ModelLibrary

    library = library or ModelLibrary()
    ready = [s for s in library.list_status() if s.ready]
    n_images = max(1, int(n_images))
    cap = _capacity_weight(n_images, n_classes)
    tops = [s.imagenet_top1 for s in ready if s.imagenet_top1 is not None]
    best_top = max(tops) if tops else None
    budget = max(1.0, float(time_budget_s))
    out: list[Recommendation] = []
    for st in ready:
        arch = library.arch(st.name)
        size = _effective_size(arch, image_size)
        speed = speed_of(st.name, size, device, measure=measure, library=library)
        top1 = st.imagenet_top1 if st.imagenet_top1 is not None else 70.0
        acc = (top1 - 70.0) / 5.0 * cap
        # parameters per training image: beyond ~10k per image the extra capacity mostly memorises
        over = max(0.0, math.log10(st.params_m * 1e6 / n_images / 1e4)) * (1.0 - cap) * 0.5
        rec = Recommendation(name=st.name, title=st.title, score=0.0, reason="", est_seconds_per_epoch=None,
                             images_per_s=speed, imagenet_top1=st.imagenet_top1, params_m=st.params_m, image_size=size)
        if speed:
            per_epoch = n_images * (1.0 + EVAL_COST * 0.2) / speed  # validation is ~20 % of the training set
            fit = budget / per_epoch
            time_term = math.log(min(1.0, fit / epochs)) * 1.5
            rec.est_seconds_per_epoch = per_epoch
            rec.epochs_in_budget = fit
            rec.fits_budget = fit >= MIN_EPOCHS
            rec.score = acc - over + time_term - (3.0 if not rec.fits_budget else 0.0)
        else:
            rec.score = acc - over - 10.0  # unknown speed: after the measured ones
        rec.details = {"accuracy_term": acc, "overfit_term": -over, "capacity_weight": cap}
        out.append(rec)
    out.sort(key=lambda r: r.score, reverse=True)
    fastest = max((r.images_per_s for r in out if r.images_per_s), default=None)
    for rank, r in enumerate(out):
        r.reason = _reason(r, rank, n_images, budget, epochs, cap, best_top, fastest)
    return out


def _reason(r: Recommendation, rank: int, n_images: int, budget: float, epochs: int, cap: float,
            best_top: float | None, fastest: float | None) -> str:
    title = r.title or r.name
    acc = f"ImageNet top-1 {r.imagenet_top1:.1f} %" if r.imagenet_top1 is not None else "no published ImageNet accuracy"
    if best_top is not None and r.imagenet_top1 is not None and r.imagenet_top1 >= best_top - 1e-9:
        acc += " (the most accurate ready model)"
    if cap < 0.75:
        data = f"with {n_images} images extra capacity pays only partly"
    else:
        data = f"{n_images} images can use its capacity"
    if r.images_per_s is None:
        return (f"{title}: {acc}; {data}; its speed on this machine is not measured yet "
                f"(measure it to see whether it fits your {_fmt_seconds(budget)}).")
    speed = f"trains at {r.images_per_s:.0f} images/s here"
    if fastest and r.images_per_s >= fastest - 1e-9:
        speed += " (the fastest)"
    epoch = f"one epoch takes about {_fmt_seconds(r.est_seconds_per_epoch)}"
    fit = r.epochs_in_budget or 0.0
    if fit >= epochs:
        budget_s = f"{epochs} epochs fit easily in your {_fmt_seconds(budget)}"
    elif r.fits_budget:
        budget_s = f"only about {fit:.0f} of the {epochs} epochs it needs fit in your {_fmt_seconds(budget)}"
    else:
        budget_s = f"not even {MIN_EPOCHS} epochs fit in your {_fmt_seconds(budget)} (it needs about {_fmt_seconds(epochs * r.est_seconds_per_epoch)})"
    lead = "Best choice: " if rank == 0 else ""
    return f"{lead}{title} {speed}, so {epoch} and {budget_s}; {acc}, and {data}."
