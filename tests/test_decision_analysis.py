"""The analysis behind a run's decision: temperature scaling, split conformal sets, the
operating point on validation, subgroups, and the leakage check on real photographs."""
from __future__ import annotations

import io

import numpy as np
import pytest

from tlstudio.core.analysis.calibration import calibration_report, fit_temperature, rescale_probabilities, softmax_t
from tlstudio.core.analysis.conformal import conformal_quantile, coverage_report, prediction_sets
from tlstudio.core.analysis.operating import choose_threshold, guess_positive, operating_point, positive_index
from tlstudio.core.analysis.subgroups import subgroup_report


def overconfident(n: int, k: int = 3, t_true: float = 2.5, seed: int = 0):
    """Logits whose labels are drawn from softmax(logits / t_true): a model t_true times too sure."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, size=(n, k))
    p = softmax_t(z, t_true)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z, y


def test_temperature_scaling_recovers_the_overconfidence_and_lowers_ece():
    z, y = overconfident(4000)
    t = fit_temperature(z[:2000], y[:2000])
    assert 2.2 < t < 2.8
    before = calibration_report(softmax_t(z[2000:]), y[2000:])
    after = calibration_report(softmax_t(z[2000:], t), y[2000:])
    assert after["ece"] < 0.5 * before["ece"] and after["brier"] < before["brier"]
    assert (softmax_t(z, t).argmax(1) == z.argmax(1)).all()  # the called class never changes
    assert np.allclose(rescale_probabilities(softmax_t(z), t), softmax_t(z, t))  # from probabilities alone
    assert sum(b["n"] for b in after["bins"]) == 2000


def test_no_temperature_when_nothing_improves_or_nothing_to_fit():
    z, y = overconfident(2000, t_true=1.0)
    assert 0.85 < fit_temperature(z, y) < 1.15
    assert fit_temperature(z[:1], y[:1]) == 1.0


@pytest.mark.parametrize("method", ["lac", "aps"])
def test_conformal_sets_cover_at_the_level_on_exchangeable_cases(method):
    """Coverage holds on average over calibration sets (one set of 1,000 cases varies by about
    one point): LAC close to the level, the non-randomised APS above it."""
    cov, size = [], []
    for seed in range(8):
        z, y = overconfident(3000, k=4, t_true=1.0, seed=seed)
        p = softmax_t(z)
        q = conformal_quantile(p[:1000], y[:1000], 0.9, method)
        rep = coverage_report(prediction_sets(p[1000:], q, method), y[1000:], 0.9)
        cov.append(rep["coverage"])
        size.append(rep["mean_set_size"])
        if method == "aps":
            assert rep["empty"] == 0  # the top class is always in an APS set
    assert (0.89 <= np.mean(cov) <= 0.92) if method == "lac" else (0.9 <= np.mean(cov) <= 0.98)
    assert 1.0 < np.mean(size) < 4.0


def test_conformal_quantile_is_the_finite_sample_one():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.55, 0.45]] * 2)
    y = np.zeros(10, dtype=int)
    scores = np.sort(1 - p[:, 0])
    assert conformal_quantile(p[:9], y[:9], 0.9) == pytest.approx(np.sort(1 - p[:9, 0])[8])  # ceil(10 * 0.9) = 9th
    assert conformal_quantile(p, y, 0.8) == pytest.approx(scores[8])  # ceil(11 * 0.8) = 9th of 10
    assert conformal_quantile(p[:5], y[:5], 0.9) == float("inf")  # too few cases: every class
    assert prediction_sets(p[:2], float("inf")).all()


def test_operating_point_chosen_on_validation_meets_its_target():
    rng = np.random.default_rng(3)
    pos = rng.random(400) < 0.3
    s = np.clip(rng.normal(np.where(pos, 0.65, 0.35), 0.15), 0, 1)
    for method, key in (("sensitivity", "sensitivity"), ("specificity", "specificity")):
        ch = choose_threshold(s, pos, method, target=0.9)
        assert ch["validation"][key] >= 0.9
        assert not np.isin(ch["threshold"], s)  # half-way between two scores: no case on the edge
    j = choose_threshold(s, pos, "youden")
    op = j["validation"]
    assert op["sensitivity"] + op["specificity"] >= max(
        operating_point(s, pos, t)["sensitivity"] + operating_point(s, pos, t)["specificity"] for t in s) - 1e-9
    assert choose_threshold(s, pos, "fixed", threshold=0.42)["threshold"] == 0.42
    one = choose_threshold(s[pos], pos[pos], "sensitivity")
    assert one["method"] == "fixed" and "no negative" in one["note"]
    op = operating_point(s, pos, 0.5)
    lo, hi = op["sensitivity_ci95"]
    assert lo < op["sensitivity"] < hi and op["tp"] + op["fn"] == int(pos.sum())


def test_positive_class_is_the_finding():
    assert guess_positive(["benign", "malignant"]) == 1
    assert guess_positive(["abnormal", "normal"]) == 0
    assert guess_positive(["normal", "pneumonia"]) == 1
    assert guess_positive(["cat", "dog"]) == 1
    assert positive_index(["a", "b"], "a") == 0
    with pytest.raises(ValueError, match="not one of the classes"):
        positive_index(["a", "b"], "c")


def test_a_subgroup_far_below_the_whole_is_flagged():
    rng = np.random.default_rng(5)
    n = 600
    site = np.array(["A", "B", "C"])[rng.integers(0, 3, n)]
    y = (rng.random(n) < 0.5).astype(int)
    called = y.copy()
    miss = (site == "C") & (y == 1) & (rng.random(n) < 0.6)  # site C: most positives missed
    called[miss] = 0
    probs = np.column_stack([1 - called * 0.8 - 0.1, called * 0.8 + 0.1])
    rep = subgroup_report(site.tolist(), y, probs, called, positive=1, column="site")
    by = {g["name"]: g for g in rep["groups"]}
    assert "sensitivity" in by["C"]["far_below"]
    assert not by["A"]["far_below"] and not by["B"]["far_below"]
    assert by["C"]["sensitivity_ci95"][1] < rep["whole"]["sensitivity"]


def _photos():
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "hubble_deep_field",
                 "motorcycle_left"):
        try:
            a = getattr(data, name)()
        except Exception:  # noqa: BLE001 - a sample needs pooch where it is not bundled
            continue
        out.append(a if a.ndim == 3 else np.repeat(a[..., None], 3, -1))
    if len(out) < 5:
        pytest.skip("scikit-image's bundled sample photographs are not available")
    return [np.ascontiguousarray(a[..., :3]) for a in out]


def test_leakage_check_finds_changed_copies_and_nothing_between_different_photos():
    from PIL import Image

    from tlstudio.core.analysis.leakage import find_leaks

    photos = _photos()
    imgs = [np.asarray(Image.fromarray(a).resize((96, 96), Image.BILINEAR)) for a in photos]
    splits = ["train"] * 3 + ["val"] * 1 + ["test"] * (len(imgs) - 4)
    refs = [f"photo{i}" for i in range(len(imgs))]
    clean = find_leaks(imgs, splits, refs)
    assert clean.count == 0 and clean.checked["test"] == len(imgs) - 4

    def jpeg(a, q=60):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=q)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))

    t0, t1, t2 = imgs[4], imgs[5 % len(imgs)], imgs[4 + 2 % (len(imgs) - 4)]
    copies = [np.asarray(Image.fromarray(t0).resize((60, 60)).resize((96, 96))),  # resized
              jpeg(t1),  # re-encoded
              np.asarray(Image.fromarray(t2[4:-4, 4:-4]).resize((96, 96)))]  # slightly cropped
    leaked = find_leaks(imgs + copies, splits + ["train"] * 3, refs + ["copy0", "copy1", "copy2"])
    twins = {(lk.a_ref, lk.b_ref) for lk in leaked.leaks}
    assert {("photo4", "copy0"), (refs[5 % len(imgs)], "copy1"), (refs[4 + 2 % (len(imgs) - 4)], "copy2")} <= twins
    assert all(lk.b_split == "train" for lk in leaked.leaks)
    assert "copy" in leaked.summary() and leaked.to_dict()["count"] == leaked.count


def test_a_temperature_that_does_not_hold_out_is_said():
    """Temperature scaling is checked on validation cases it was not fitted on (5-fold): a real
    overconfidence helps held-out cases; a temperature fitted to the noise of a few well-calibrated
    cases does not, and the decision says so."""
    from types import SimpleNamespace

    from tlstudio.core.analysis.calibration import cross_validated_gain
    from tlstudio.core.analysis.decision import fit_decision

    z, y = overconfident(1000)
    assert cross_validated_gain(z, y)["helps"] is True
    assert cross_validated_gain(z[:6], y[:6])["helps"] is None  # too few cases to hold any out
    cfg = SimpleNamespace(calibrate=True, positive_class="", threshold_method="youden", threshold=0.5, target=0.9,
                          conformal_level=0.0, conformal_method="lac")
    noisy = None
    for seed in range(40):  # a well-calibrated model's 60 validation cases: some seed fits a T that does not hold out
        zc, yc = overconfident(60, k=2, t_true=1.0, seed=seed)
        dec = fit_decision(zc, yc, ["a", "b"], cfg)
        if dec.temperature != 1.0 and dec.calibration_check.get("helps") is False:
            noisy = dec
            break
    assert noisy is not None and "did not help the validation cases held out" in noisy.note


def test_batched_hashes_and_ssim_are_the_libraries_own():
    """The leakage check hashes and compares thousands of images in batches; its numbers are
    exactly imagehash's pHash and scikit-image's SSIM, on which the thresholds were measured."""
    import imagehash
    from PIL import Image
    from skimage.metrics import structural_similarity

    from tlstudio.core.analysis.leakage import CROPS, perceptual_hashes, ssim_batch, thumbnail_similarity, thumbnails

    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, size=(40, 48, 56, 3), dtype=np.uint8)
    imgs[20:] = imgs[20:] // 64 * 64  # flat regions: ties at the median
    ours = perceptual_hashes(imgs)
    for i in range(len(imgs)):
        im = Image.fromarray(imgs[i]).convert("L")
        w, h = im.size
        for k, c in enumerate(CROPS):
            dx, dy = round(w * (1 - c) / 2), round(h * (1 - c) / 2)
            view = im.crop((dx, dy, w - dx, h - dy)) if c < 1.0 else im
            bits = imagehash.phash(view, hash_size=8).hash.flatten()
            assert int(ours[i, k]) == int("".join("1" if b else "0" for b in bits), 2)
    t = thumbnails(imgs[0]) / 255.0, thumbnails(imgs[1]) / 255.0
    assert np.isclose(ssim_batch(t[0][:1], t[1][:1])[0], structural_similarity(t[0][0], t[1][0], data_range=1.0))
    assert thumbnail_similarity(imgs[0], imgs[0]) == 1.0 and thumbnail_similarity(imgs[0], imgs[1]) < 0.5

