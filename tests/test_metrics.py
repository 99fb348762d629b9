"""Tests of gankit.metrics: math against independent numpy/scipy code, caching, provenance,
and the offline behaviour of the InceptionV3 extractor (no network is ever touched)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from gankit.errors import ConfigError, DataError, GankitError
from gankit.metrics import (
    FeatureExtractor,
    FeatureStats,
    InceptionV3Extractor,
    ModuleExtractor,
    TinyExtractor,
    compute_stats,
    evaluate,
    fid_from_features,
    fid_from_stats,
    get_extractor,
    inception_score_from_logits,
    inception_score_from_probs,
    kid_from_features,
    mean_cov,
    precision_recall,
)
from gankit.metrics import inception as inception_mod


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _correlated(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = _gen(seed)
    mix = torch.randn(d, d, generator=g) / math.sqrt(d)
    return torch.randn(n, d, generator=g) @ mix + shift


# ---------------------------------------------------------------- independent references


def _np_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID as in the original TTUR / pytorch-fid code: scipy sqrtm of the product."""
    scipy_linalg = pytest.importorskip("scipy.linalg")
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy_linalg.sqrtm(s1 @ s2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _np_mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3, coef: float = 1.0) -> float:
    """Unbiased MMD^2 written out with explicit off-diagonal masks."""
    gamma = 1.0 / x.shape[1]
    m = x.shape[0]
    k = lambda a, b: (gamma * a @ b.T + coef) ** degree  # noqa: E731
    off = ~np.eye(m, dtype=bool)
    return float(
        k(x, x)[off].sum() / (m * (m - 1)) + k(y, y)[off].sum() / (m * (m - 1)) - 2 * k(x, y).mean()
    )


# ---------------------------------------------------------------- FID


def test_fid_of_a_set_against_itself_is_zero() -> None:
    f = _correlated(300, 16, seed=0, shift=3.0)
    assert abs(fid_from_features(f, f)) < 1e-6
    # Fewer samples than dimensions: singular covariance, still ~0.
    g = torch.randn(10, 32, generator=_gen(1))
    assert abs(fid_from_features(g, g)) < 1e-6


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_fid_matches_scipy_sqrtm(shift: float) -> None:
    a = _correlated(400, 24, seed=2)
    b = _correlated(400, 24, seed=3, shift=shift) * 1.3
    ours = fid_from_features(a, b)
    ref = _np_fid(a.double().numpy(), b.double().numpy())
    assert ref > 0.1
    assert abs(ours - ref) / ref < 1e-3


def test_fid_matches_torch_fidelity_and_torchmetrics() -> None:
    a, b = _correlated(200, 12, seed=4), _correlated(200, 12, seed=5, shift=0.3)
    (mu1, s1), (mu2, s2) = mean_cov(a), mean_cov(b)
    ours = fid_from_stats(mu1, s1, mu2, s2)
    tf_metric = pytest.importorskip("torch_fidelity.metric_fid")
    out = tf_metric.fid_statistics_to_metric(
        {"mu": mu1.numpy(), "sigma": s1.numpy()}, {"mu": mu2.numpy(), "sigma": s2.numpy()}, False
    )
    assert abs(ours - out[tf_metric.KEY_METRIC_FID]) / ours < 1e-3
    tm_fid = pytest.importorskip("torchmetrics.image.fid")
    assert abs(ours - float(tm_fid._compute_fid(mu1, s1, mu2, s2))) / ours < 1e-3


def test_fid_rejects_mismatched_dimensions() -> None:
    with pytest.raises(ConfigError, match="same extractor"):
        fid_from_features(torch.randn(5, 3), torch.randn(5, 4))


# ---------------------------------------------------------------- KID


def test_kid_matches_numpy_transcription() -> None:
    a, b = _correlated(120, 10, seed=6), _correlated(120, 10, seed=7, shift=0.4)
    # subset_size = N: every subset is a permutation of the full sets, so each subset's
    # unbiased MMD^2 equals the full-sample estimate and the std is 0.
    mean, std = kid_from_features(a, b, subsets=3, subset_size=120)
    ref = _np_mmd2_unbiased(a.double().numpy(), b.double().numpy())
    assert ref > 0
    assert abs(mean - ref) / ref < 1e-3
    assert std < 1e-9 * max(1.0, ref)


def test_kid_matches_torch_fidelity_on_full_subsets() -> None:
    tf_kid = pytest.importorskip("torch_fidelity.metric_kid")
    a, b = _correlated(80, 6, seed=8), _correlated(80, 6, seed=9, shift=0.6)
    out = tf_kid.kid_features_to_metric(
        a.double(), b.double(), kid_subsets=2, kid_subset_size=80, verbose=False
    )
    mean, _ = kid_from_features(a, b, subsets=2, subset_size=80)
    ref = out[tf_kid.KEY_METRIC_KID_MEAN]
    assert abs(mean - ref) / abs(ref) < 1e-3


def test_kid_is_unbiased_and_the_test_could_tell() -> None:
    g = _gen(10)
    draws, biased, m = [], [], 16
    for _ in range(300):
        x, y = torch.randn(m, 4, generator=g), torch.randn(m, 4, generator=g)
        draws.append(kid_from_features(x, y, subsets=1, subset_size=m)[0])
        # The biased (V-statistic) estimate keeps the diagonal: a wrong implementation.
        k = lambda a, b: (a @ b.T / 4 + 1) ** 3  # noqa: E731
        biased.append(float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()))
    draws_t, biased_t = torch.tensor(draws), torch.tensor(biased)
    se = float(draws_t.std() / math.sqrt(len(draws)))
    assert abs(float(draws_t.mean())) < 4 * se
    assert float(biased_t.mean()) > 4 * float(biased_t.std() / math.sqrt(len(biased)))


def test_kid_is_reproducible_and_leaves_global_rng_alone() -> None:
    a, b = torch.randn(50, 5, generator=_gen(11)), torch.randn(60, 5, generator=_gen(12))
    state = torch.get_rng_state()
    first = kid_from_features(a, b, subsets=5, subset_size=20)
    assert torch.equal(state, torch.get_rng_state())
    assert first == kid_from_features(a, b, subsets=5, subset_size=20)
    assert first[1] > 0  # genuine subsets differ


# ---------------------------------------------------------------- Inception Score


def test_inception_score_of_uniform_probabilities_is_one() -> None:
    mean, std = inception_score_from_probs(torch.full((40, 7), 1 / 7), splits=4)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)
    assert inception_score_from_logits(torch.zeros(40, 7), splits=4)[0] == pytest.approx(1.0)


def test_inception_score_of_balanced_one_hot_is_class_count() -> None:
    classes, splits = 6, 5
    labels = torch.arange(classes * splits * 3) % classes  # every split holds each class 3x
    probs = torch.nn.functional.one_hot(labels, classes).double()
    mean, std = inception_score_from_probs(probs, splits=splits)
    assert mean == pytest.approx(classes, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_matches_torch_fidelity() -> None:
    tf_isc = pytest.importorskip("torch_fidelity.metric_isc")
    logits = torch.randn(60, 9, generator=_gen(13)) * 3
    out = tf_isc.isc_features_to_metric(logits, splits=3, shuffle=False)
    mean, std = inception_score_from_logits(logits, splits=3)
    assert mean == pytest.approx(out[tf_isc.KEY_METRIC_ISC_MEAN], rel=1e-6)
    assert std == pytest.approx(out[tf_isc.KEY_METRIC_ISC_STD], rel=1e-6, abs=1e-9)


def test_inception_score_rejects_non_probabilities() -> None:
    with pytest.raises(ConfigError, match="sum to 1"):
        inception_score_from_probs(torch.ones(10, 3), splits=2)


# ---------------------------------------------------------------- precision / recall


def test_precision_recall_identical_and_disjoint_sets() -> None:
    real = torch.randn(80, 8, generator=_gen(14))
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    far = torch.randn(80, 8, generator=_gen(15)) + 1000.0
    assert precision_recall(real, far) == (0.0, 0.0)
    # Half the fakes are real points, half are far away: precision is exactly 1/2.
    mixed = torch.cat([real[:40], far[:40]])
    assert precision_recall(real, mixed, chunk_size=7)[0] == 0.5


def test_precision_recall_matches_torch_fidelity() -> None:
    tf_prc = pytest.importorskip("torch_fidelity.metric_prc")
    real = torch.randn(90, 5, generator=_gen(16))
    fake = torch.randn(70, 5, generator=_gen(17)) * 1.4 + 0.3
    out = tf_prc.prc_features_to_metric(fake, real, verbose=False)
    assert precision_recall(real, fake, k=3) == pytest.approx(
        (out[tf_prc.KEY_METRIC_PRECISION], out[tf_prc.KEY_METRIC_RECALL])
    )


# ---------------------------------------------------------------- extractors


def _smooth_images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """Low-frequency colour images in [-1, 1]: a stand-in for a 'real' dataset."""
    coarse = torch.rand(n, 3, 4, 4, generator=_gen(seed)) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")


def test_tiny_extractor_is_deterministic_and_leaves_rngs_alone() -> None:
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    a, b = TinyExtractor(), TinyExtractor()
    assert torch.equal(torch_state, torch.get_rng_state())
    assert np.array_equal(np_state[1], np.random.get_state()[1])
    x = _smooth_images(4, seed=18)
    fa = a(x)
    assert fa.shape == (4, 128) and torch.equal(fa, b(x))
    assert not torch.equal(fa, TinyExtractor(seed=1)(x))
    assert a.comparable_to_published is False and "tiny" in a.name
    assert not any(p.requires_grad for p in a.parameters())
    # Greyscale and uint8 go through the same path.
    assert a(x[:, :1]).shape == (4, 128)


def test_tiny_fid_falls_as_samples_approach_the_data() -> None:
    real = _smooth_images(96, seed=19)
    base = _smooth_images(96, seed=20)  # fresh draws from the same distribution
    noise = torch.rand(96, 3, 32, 32, generator=_gen(21)) * 2 - 1
    ex = TinyExtractor()
    real_f = ex(real)
    # Less noise is better...
    fids = [fid_from_features(ex((1 - t) * base + t * noise), real_f) for t in (1.0, 0.6, 0.3, 0.0)]
    assert all(later < earlier for earlier, later in zip(fids, fids[1:], strict=False)), fids
    assert fids[-1] < 0.25 * fids[0]
    # ...and so is covering more modes (fewer repeated samples).
    modes = [fid_from_features(ex(base[torch.arange(96) % k]), real_f) for k in (2, 12, 96)]
    assert modes[0] > modes[1] > modes[2], modes


def test_module_extractor_wraps_any_module_with_its_input_range() -> None:
    seen = {}

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen["min"], seen["max"], seen["shape"] = float(x.min()), float(x.max()), x.shape
            return x.mean(dim=(2, 3), keepdim=True)  # (N, 3, 1, 1): flattened by the wrapper

    ex = get_extractor(ModuleExtractor(Probe(), name="probe", input_size=16, input_range=(0, 1)))
    out = ex(torch.tensor([-1.0, 1.0]).repeat(2, 3, 4, 2))
    assert out.shape == (2, 3)
    assert seen["min"] == pytest.approx(0.0) and seen["max"] == pytest.approx(1.0)
    assert tuple(seen["shape"][-2:]) == (16, 16)
    assert get_extractor(nn.Flatten()).name == "module:Flatten"
    with pytest.raises(ConfigError, match="unknown feature extractor"):
        get_extractor("vgg")


# ---------------------------------------------------------------- statistics cache


class _Counting(FeatureExtractor):
    """Channel means; counts forward passes so the tests can see cache hits."""

    feature_dim = 3

    def __init__(self, name: str = "counting", input_size: int | None = None) -> None:
        super().__init__()
        self.name, self.input_size, self.calls = name, input_size, 0
        self.resizer = "bilinear-antialias" if input_size else "none"

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], dim=1)


def test_stats_cache_is_written_once_reused_and_keyed(tmp_path) -> None:
    images = _smooth_images(20, seed=22, size=8)
    ex = _Counting()
    first = compute_stats(images, ex, dataset="toy", batch_size=8, cache_dir=tmp_path)
    assert ex.calls == 3 and len(list(tmp_path.glob("*.safetensors"))) == 1
    second = compute_stats(images, ex, dataset="toy", batch_size=8, cache_dir=tmp_path)
    assert ex.calls == 3  # cache hit: no forward pass
    assert torch.equal(first.mean, second.mean) and torch.equal(first.cov, second.cov)
    assert second.dataset == "toy" and second.extractor == "counting" and second.num_samples == 20
    # Another extractor, input size or sample count is another entry.
    other = _Counting(name="counting-v2")
    compute_stats(images, other, dataset="toy", cache_dir=tmp_path)
    resized = _Counting(input_size=4)
    compute_stats(images, resized, dataset="toy", cache_dir=tmp_path)
    compute_stats(images, ex, dataset="toy", num_samples=10, cache_dir=tmp_path)
    assert other.calls == resized.calls == 1 and ex.calls == 4
    assert len(list(tmp_path.glob("*.safetensors"))) == 4
    # Asking for features that the cached entry lacks recomputes it.
    with_f = compute_stats(images, ex, dataset="toy", keep_features=True, cache_dir=tmp_path)
    assert ex.calls == 5 and with_f.features.shape == (20, 6)
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave nothing behind
    # Without a dataset id nothing is cached.
    compute_stats(images, ex, cache_dir=tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_stats_default_cache_dir_and_streaming_moments(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path))
    images = _smooth_images(30, seed=23, size=8) * 0.1 + 5.0  # large offset
    st = compute_stats(
        images,
        _Counting(),
        dataset="offset",
        batch_size=7,
        keep_features=True,
        value_range=(-10.0, 10.0),
    )
    assert len(list((tmp_path / "stats").glob("*.safetensors"))) == 1
    mu, cov = mean_cov(st.features)
    torch.testing.assert_close(st.mean, mu)
    torch.testing.assert_close(st.cov, cov, rtol=1e-6, atol=1e-12)


def test_stats_file_round_trip_and_corrupt_file(tmp_path) -> None:
    st = compute_stats(_smooth_images(12, seed=24, size=8), "tiny", use_cache=False)
    loaded = FeatureStats.load(st.save(tmp_path / "s.safetensors"))
    assert torch.equal(loaded.mean, st.mean) and loaded.provenance() == st.provenance()
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="recompute"):
        FeatureStats.load(tmp_path / "bad.safetensors")


# ---------------------------------------------------------------- evaluate / provenance


def test_evaluate_json_carries_provenance(tmp_path) -> None:
    real = _smooth_images(48, seed=25, size=16)
    calls = []

    def sampler(n: int) -> torch.Tensor:
        calls.append(n)
        return _smooth_images(n, seed=100 + len(calls), size=16)

    res = evaluate(
        sampler,
        real,
        metrics=("fid", "kid", "pr"),
        num_samples=40,
        batch_size=16,
        reference_id="smooth-16",
        cache_dir=tmp_path,
        kid_subsets=4,
        kid_subset_size=1000,
    )
    assert calls == [16, 16, 8]
    data = json.loads(res.to_json())
    assert set(data["values"]) == {"fid", "kid_mean", "kid_std", "precision", "recall"}
    assert data["extractor"] == "tiny-v1-seed0" and data["comparable_to_published"] is False
    assert data["resizer"] == "bilinear-antialias" and data["input_size"] == 64
    assert (data["num_fake"], data["num_real"], data["reference"]) == (40, 48, "smooth-16")
    assert data["fake_image_size"] == [16, 16] and data["real_image_size"] == [16, 16]
    assert data["settings"]["kid"]["subset_size"] == 40  # the clamped size actually used
    assert data["gankit_version"] and any("not comparable" in n for n in data["notes"])
    # The cached reference statistics (with features) serve the next evaluation as a file.
    (path,) = tmp_path.glob("*.safetensors")
    again = evaluate(real[:20], str(path), metrics=["fid", "pr"])
    assert again.reference == "smooth-16" and again.num_real == 48


def test_evaluate_user_errors_are_one_line() -> None:
    real = _smooth_images(8, seed=26, size=8)
    no_features = compute_stats(real, "tiny", use_cache=False)
    cases = [
        (dict(metrics=["fid", "is"]), "Inception Score"),
        (dict(metrics=["fjd"]), "unknown metrics"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ConfigError, match=match) as info:
            evaluate(real, real, use_cache=False, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="keep_features=True"):
        evaluate(real, no_features, metrics=["kid"])
    with pytest.raises(ConfigError, match="made with"):
        evaluate(real, no_features, metrics=["fid"], extractor=_Counting())
    with pytest.raises(DataError, match="ran out"):
        evaluate(real, real, num_samples=9, use_cache=False)


# ---------------------------------------------------------------- InceptionV3


def test_import_downloads_and_imports_nothing_heavy() -> None:
    code = (
        "import sys, torch.hub\n"
        "def boom(*a, **k): raise SystemExit('network access at import')\n"
        "torch.hub.download_url_to_file = torch.hub.load_state_dict_from_url = boom\n"
        "import gankit.metrics\n"
        "assert 'torch_fidelity' not in sys.modules, 'torch_fidelity imported eagerly'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture()
def offline(tmp_path, monkeypatch):
    """An empty torch hub cache and a network that fails the test if touched."""

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(inception_mod, "_download_weights", no_network)
    monkeypatch.delenv("GANKIT_INCEPTION_WEIGHTS", raising=False)
    return hub


def test_inception_offline_without_weights_gives_one_line_advice(offline) -> None:
    for build in (InceptionV3Extractor, lambda: get_extractor("inception-v3")):
        with pytest.raises(ConfigError) as info:
            build()
        msg = str(info.value)
        assert "\n" not in msg
        assert "--inception-weights" in msg and "download=True" in msg
        assert str(offline / "checkpoints") in msg
    with pytest.raises(ConfigError, match="does not exist"):
        InceptionV3Extractor(weights_path=offline / "missing.pth")


def test_inception_failed_download_is_one_line(offline, monkeypatch) -> None:
    pytest.importorskip("torch_fidelity")
    asked = []

    def failing(url, dest):
        asked.append(dest)
        raise OSError("Name or service not known")

    monkeypatch.setattr(inception_mod, "_download_weights", failing)
    with pytest.raises(GankitError, match="could not download") as info:
        InceptionV3Extractor(download=True)
    assert "\n" not in str(info.value)
    assert asked == [offline / "checkpoints" / inception_mod.INCEPTION_WEIGHTS_FILENAMES[0]]


@pytest.fixture(scope="module")
def inception_state_file(tmp_path_factory):
    """A random-weights state dict of the FID InceptionV3 architecture (no download)."""
    pytest.importorskip("torch_fidelity")
    tv = pytest.importorskip("torchvision.models")
    # torchvision's Inception3 without the aux head has the FID network's parameter names.
    net = tv.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_loads_a_state_dict_file_and_runs(offline, inception_state_file) -> None:
    ex = InceptionV3Extractor(weights_path=inception_state_file)
    images = torch.rand(2, 3, 32, 32, generator=_gen(27)) * 2 - 1
    feats, logits = ex.forward_with_logits(images)
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert torch.isfinite(feats).all() and torch.equal(feats, ex(images))
    # Random weights: honest labels, with the weights hash in the name.
    assert ex.comparable_to_published is False
    assert ex.name == f"inception-v3-fid@{ex.weights_sha256[:8]}"
    assert ex.describe()["weights_path"] == str(inception_state_file)


def test_inception_found_in_the_torch_hub_cache(offline, inception_state_file) -> None:
    cached = offline / "checkpoints" / inception_mod.INCEPTION_WEIGHTS_FILENAMES[1]
    cached.parent.mkdir(parents=True)
    os.symlink(inception_state_file, cached)
    assert InceptionV3Extractor().weights_path == str(cached)


def test_inception_rejects_foreign_files_in_one_line(offline, tmp_path) -> None:
    pytest.importorskip("torch_fidelity")
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    pickled = tmp_path / "pickled.pth"
    torch.save({"net": nn.Linear(2, 2)}, pickled)
    for path, match in ((wrong, "does not fit"), (pickled, "cannot read")):
        with pytest.raises(ConfigError, match=match) as info:
            InceptionV3Extractor(weights_path=path)
        assert "\n" not in str(info.value)
