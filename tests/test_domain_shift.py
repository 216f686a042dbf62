"""Domain shift and forgetting: gradient reversal, the MMD test, Fisher information and the
EWC penalty, the scratch comparison's verdict (fast, on real pixels where data are involved)."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from conftest import mnist_arrays as _mnist_arrays
from torch import nn

from tlstudio.core.techniques.adaptation import DomainDiscriminator, GradientReversal, domain_adversarial_loss, gradient_reversal, grl_lambda
from tlstudio.core.analysis.compare import Arm, ScratchComparison, t_interval
from tlstudio.core.techniques.continual import EWCPenalty, _looped_squared_grads, diagonal_fisher
from tlstudio.core.analysis.diagnostics import embed_2d, mmd2_unbiased, mmd_test


@functools.lru_cache(maxsize=1)
def mnist_arrays():
    """MNIST-5k, parsed once for this module (read-only copies handed out)."""
    X, y = _mnist_arrays()
    X.flags.writeable = y.flags.writeable = False
    return X, y


def sklearn_digits_28() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (another set of writers and a coarser scan) upsampled to 28x28."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    ims = np.stack([np.asarray(Image.fromarray(np.round(im * 255 / 16).astype(np.uint8)).resize((28, 28), Image.BILINEAR))
                    for im in d.images])
    return ims, d.target


# --- gradient reversal ---------------------------------------------------------------------
@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_flips_the_gradient_sign_times_lambda(lam):
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4, dtype=torch.float64)
    y = gradient_reversal(x, lam)
    assert torch.equal(y, x)  # identity going forward
    (y * w).sum().backward()
    assert torch.equal(x.grad, -lam * w)  # exactly -lambda times the incoming gradient
    # the same through the module, behind a real layer: the reversed layer's gradient is the
    # plain gradient negated and scaled
    lin = nn.Linear(4, 3).double()
    x1 = x.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    lin(GradientReversal(lam)(x1)).pow(2).sum().backward()
    lin.zero_grad()
    lin(x2).pow(2).sum().backward()
    assert torch.allclose(x1.grad, -lam * x2.grad)


def test_reversal_weight_follows_the_ganin_schedule():
    ps = np.linspace(0, 1, 11)
    lams = [grl_lambda(p) for p in ps]
    assert lams[0] == 0.0 and abs(lams[-1] - (2 / (1 + np.exp(-10)) - 1)) < 1e-12
    assert all(b > a for a, b in zip(lams, lams[1:]))  # rises monotonically
    assert abs(grl_lambda(0.5) - (2 / (1 + np.exp(-5)) - 1)) < 1e-12
    assert grl_lambda(0.5, "ganin", 0.5) == pytest.approx(0.5 * grl_lambda(0.5))
    assert grl_lambda(0.0, "fixed", 0.7) == grl_lambda(0.9, "fixed", 0.7) == 0.7
    with pytest.raises(ValueError):
        grl_lambda(0.5, "linear")


def test_domain_loss_trains_the_discriminator_and_confuses_the_features():
    torch.manual_seed(0)
    disc = DomainDiscriminator(8, 16)
    fs = torch.randn(10, 8, requires_grad=True)
    ft = (torch.randn(10, 8) + 2).requires_grad_(True)
    loss, acc = domain_adversarial_loss(disc, GradientReversal(1.0), fs, ft)
    loss.backward()
    gd = [p.grad.clone() for p in disc.parameters()]
    g_features = fs.grad.clone()
    # without reversal the discriminator's gradient is the same, the features' is negated
    disc.zero_grad()
    fs2 = fs.detach().clone().requires_grad_(True)
    loss2, _ = domain_adversarial_loss(disc, GradientReversal(-1.0), fs2, ft.detach())
    loss2.backward()
    assert all(torch.allclose(a, p.grad) for a, p in zip(gd, disc.parameters()))
    assert torch.allclose(g_features, -fs2.grad)
    assert 0.0 <= float(acc) <= 1.0


# --- MMD -------------------------------------------------------------------------------------
def test_mmd_finds_a_real_shift_and_none_between_halves_of_one_data_set():
    X, _ = mnist_arrays()
    D, _ = sklearn_digits_28()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))[:300]
    a = X[idx[:150]].reshape(150, -1) / 255.0
    b = X[idx[150:]].reshape(150, -1) / 255.0
    t = D[rng.permutation(len(D))[:150]].reshape(150, -1) / 255.0
    same = mmd_test(a, b, permutations=300, seed=1)
    shifted = mmd_test(a, t, permutations=300, seed=1)
    assert same.p_value > 0.05 and not same.shifted
    assert shifted.p_value < 0.05 and shifted.shifted
    assert shifted.mmd2 > 10 * abs(same.mmd2)
    assert abs(same.mmd2) < 0.01  # the unbiased estimate sits at 0 for one distribution
    # the multi-bandwidth kernel agrees; the p-value is never 0 (the observed split counts)
    multi_same = mmd_test(a, b, permutations=300, multi_bandwidth=True, seed=1)
    multi_shift = mmd_test(a, t, permutations=300, multi_bandwidth=True, seed=1)
    assert multi_same.p_value > 0.05 and multi_shift.p_value < 0.05
    assert shifted.p_value == pytest.approx(1 / 301) and len(multi_shift.bandwidths) == 5
    assert "real domain shift" in shifted.explanation() and "No evidence" in same.explanation()


def test_unbiased_mmd_matches_the_textbook_formula():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(7, 3)), rng.normal(0.5, 1, size=(9, 3))
    s = 1.3

    def k(a, b):
        return np.exp(-((a - b) ** 2).sum() / (2 * s * s))

    kxx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    kyy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    kxy = sum(k(a, b) for a in x for b in y) / (7 * 9)
    assert mmd2_unbiased(x, y, [s]) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-9)


def test_embedding_of_both_domains():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)), rng.normal(3, 1, size=(30, 6))
    for method in ("pca", "tsne"):
        e = embed_2d(x, y, method)
        assert e.shape == (70, 2) and np.isfinite(e).all()
    e = embed_2d(x, y, "pca")
    # the first component separates the two clouds
    assert abs(e[:40, 0].mean() - e[40:, 0].mean()) > 2 * e[:, 1].std()


# --- Fisher and EWC --------------------------------------------------------------------------
class _SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 5, stride=2)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 12 * 12, 3)
        self.unused = nn.Linear(5, 5)  # never called: cannot affect the loss

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def _digit_batches(n=32, bs=16):
    X, y = mnist_arrays()
    keep = np.flatnonzero(np.isin(y, (0, 1, 7)))[:n]
    x = torch.from_numpy(X[keep].copy()).float().div(255).unsqueeze(1)
    lab = torch.from_numpy(np.searchsorted([0, 1, 7], y[keep])).long()
    return [(x[i:i + bs], lab[i:i + bs]) for i in range(0, n, bs)]


def test_fisher_is_the_mean_squared_per_sample_gradient_and_zero_for_an_unused_parameter():
    torch.manual_seed(0)
    net = _SmallNet()
    batches = _digit_batches()
    f = diagonal_fisher(net, batches)
    assert set(f) == {k for k, _ in net.named_parameters()}
    assert torch.count_nonzero(f["unused.weight"]) == 0 and torch.count_nonzero(f["unused.bias"]) == 0
    assert float(f["conv.weight"].sum()) > 0 and float(f["fc.weight"].sum()) > 0
    # the same as one backward pass per image (exact, not a batch-gradient approximation)
    names = [k for k, _ in net.named_parameters()]
    ref = {k: torch.zeros_like(v) for k, v in f.items()}
    for x, y in batches:
        for k, v in _looped_squared_grads(net, names, x, y).items():
            ref[k] += v
    for k in names:
        assert torch.allclose(f[k], ref[k] / 32, rtol=1e-4, atol=1e-10), k
    # at most max_samples images are used; a subset of names can be asked for
    f16 = diagonal_fisher(net, batches, names=["fc.weight"], max_samples=16)
    assert set(f16) == {"fc.weight"}
    assert torch.allclose(f16["fc.weight"], diagonal_fisher(net, batches[:1])["fc.weight"], rtol=1e-5)


def test_ewc_penalty_is_half_lambda_fisher_weighted_squared_distance():
    torch.manual_seed(0)
    net = _SmallNet()
    fisher = diagonal_fisher(net, _digit_batches())
    anchor = {k: p.detach().clone() for k, p in net.named_parameters()}
    pen = EWCPenalty(fisher, anchor, strength=50.0)
    assert float(pen(net).detach()) == 0.0  # at the earlier task's weights
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    expected = 25.0 * sum(float((fisher[k] * (p - anchor[k]) ** 2).sum()) for k, p in net.named_parameters())
    assert float(pen(net).detach()) == pytest.approx(expected, rel=1e-5)
    # moving a weight the earlier task does not use costs nothing
    before = float(pen(net).detach())
    with torch.no_grad():
        net.unused.weight.add_(100.0)
    assert float(pen(net).detach()) == pytest.approx(before, rel=1e-6)
    # its gradient pulls every weight back towards the anchor, harder where the Fisher is larger
    net.zero_grad()
    pen(net).backward()
    g, d = net.fc.weight.grad, net.fc.weight.detach() - anchor["fc.weight"]
    assert torch.allclose(g, 50.0 * fisher["fc.weight"] * d, rtol=1e-4, atol=1e-12)
    # a parameter whose shape changed (a new head) is left out
    other = dict(anchor, **{"fc.weight": torch.zeros(2, 2)})
    assert "fc.weight" not in EWCPenalty(fisher, other, 1.0).names


# --- the scratch comparison's verdict --------------------------------------------------------
def _cmp(transfer, scratch):
    return ScratchComparison("accuracy", Arm("transfer", "imagenet", list(transfer), list(range(len(transfer)))),
                             Arm("scratch", "none", list(scratch), list(range(len(scratch)))))


def test_scratch_comparison_verdicts():
    helps = _cmp([0.90, 0.92, 0.91], [0.60, 0.65, 0.62])
    assert not helps.negative_transfer and helps.verdict.startswith("Transfer helps")
    lo, hi = helps.difference_ci95
    assert 0 < lo < helps.difference < hi
    d = helps.to_dict()
    assert d["transfer"]["mean"] == pytest.approx(0.91) and d["scratch"]["ci95"][0] < 0.6233 < d["scratch"]["ci95"][1]
    hurts = _cmp([0.70, 0.72, 0.69], [0.75, 0.74, 0.76])
    assert hurts.negative_transfer and "WARNING" in hurts.verdict and "negative transfer" in hurts.verdict
    tie = _cmp([0.5, 0.5], [0.5, 0.5])
    assert tie.negative_transfer  # scratch >= transfer: transfer brought nothing
    unsure = _cmp([0.80, 0.70, 0.75], [0.74, 0.76, 0.72])
    assert not unsure.negative_transfer and "not certain" in unsure.verdict
    # Student's t interval: 95% CI of (1, 2, 3) is 2 ± 4.303 * 1 / sqrt(3)
    lo, hi = t_interval([1.0, 2.0, 3.0])
    assert lo == pytest.approx(2 - 4.302653 / 3 ** 0.5, rel=1e-5) and hi == pytest.approx(2 + 4.302653 / 3 ** 0.5, rel=1e-5)


# --- the target domain's data ----------------------------------------------------------------
def test_target_classes_match_the_source_by_name_and_labels_stay_out_of_adaptation(tmp_path):
    from types import SimpleNamespace

    from conftest import make_digit_folder

    from tlstudio.core.data import build_image_cache, read_data
    from tlstudio.core.techniques.target import TargetData

    root = make_digit_folder(tmp_path / "t", classes=(0, 1, 9), per_class=10)
    (root / "1" / "broken.png").write_bytes(b"not an image")
    table = read_data(root)
    assert any("broken.png" in s.ref for s in table.report.skipped)  # reported, not fatal
    images, valid = build_image_cache(table, 32, tmp_path / "cache")
    source = SimpleNamespace(size=32, mean=(0.5,) * 3, std=(0.25,) * 3, class_names=["0", "1", "7"])
    t = TargetData(table, images, valid, source, test_fraction=0.3, seed=0)
    assert t.unknown_classes == ["9"]  # not a source class: used unlabelled
    assert len(t.indices["test"]) == 6 and set(t.labels("test")) == {0, 1}  # 30% of each known class
    assert len(t) == 30 and len(t.indices["adapt"]) == 24
    assert not set(t.indices["test"]) & set(t.indices["adapt"])
    x, y = t.dataset("test")[0]
    assert x.shape == (3, 32, 32) and int(y) in (0, 1)
    rec = t.split_record()["refs"]
    assert sum(v == "test" for v in rec.values()) == 6
    # the same seed gives the same held-out images
    again = TargetData(table, images, valid, source, test_fraction=0.3, seed=0)
    assert np.array_equal(again.indices["test"], t.indices["test"])
