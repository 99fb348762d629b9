"""SWD against a numpy/scipy transcription of PGGAN's released code, its behaviour under noise
and blur, hypothesis properties; MS-SSIM diversity from torchmetrics; both through
``evaluate``, the Trainer's periodic evaluation and ``gankit eval``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gankit.data import generate_toy_faces
from gankit.errors import ConfigError
from gankit.metrics import (
    compute_stats,
    evaluate,
    laplacian_pyramid,
    ms_ssim_diversity,
    ms_ssim_settings,
    sliced_wasserstein_distance,
)
from gankit.metrics.swd import patch_positions, swd_resolutions

# ------------------------------------------------ PGGAN's metrics/sliced_wasserstein.py, in numpy
# A straightforward transcription of the released code; the only change is that the random
# patch positions and directions are passed in (so both sides use the same draws).

_PGGAN_FILTER = np.float32(
    [[1, 4, 6, 4, 1], [4, 16, 24, 16, 4], [6, 24, 36, 24, 6], [4, 16, 24, 16, 4], [1, 4, 6, 4, 1]]
) / 256.0


def _np_pyr_down(minibatch):
    return scipy.ndimage.convolve(minibatch, _PGGAN_FILTER[None, None], mode="mirror")[:, :, ::2, ::2]


def _np_pyr_up(minibatch):
    s = minibatch.shape
    res = np.zeros((s[0], s[1], s[2] * 2, s[3] * 2), minibatch.dtype)
    res[:, :, ::2, ::2] = minibatch
    return scipy.ndimage.convolve(res, _PGGAN_FILTER[None, None] * 4.0, mode="mirror")


def _np_laplacian_pyramid(minibatch, num_levels):
    pyramid = [np.float32(minibatch)]
    for _ in range(1, num_levels):
        pyramid.append(_np_pyr_down(pyramid[-1]))
        pyramid[-2] -= _np_pyr_up(pyramid[-1])
    return pyramid


def _np_descriptors(minibatch, nhood_size, nhoods_per_image, rows, cols):
    s = minibatch.shape
    n = nhoods_per_image * s[0]
    h = nhood_size // 2
    nhood, chan, x, y = np.ogrid[0:n, 0 : s[1], -h : h + 1, -h : h + 1]
    img = nhood // nhoods_per_image
    x = x + cols.reshape(n, 1, 1, 1)  # np.random.randint(h, s[3] - h) in PGGAN
    y = y + rows.reshape(n, 1, 1, 1)  # np.random.randint(h, s[2] - h) in PGGAN
    idx = ((img * s[1] + chan) * s[2] + y) * s[3] + x
    return minibatch.flat[idx]


def _np_finalize(desc):
    desc = desc - np.mean(desc, axis=(0, 2, 3), keepdims=True)
    desc /= np.std(desc, axis=(0, 2, 3), keepdims=True)
    return desc.reshape(desc.shape[0], -1)


def _np_sliced_wasserstein(a, b, raw_dirs):
    results = []
    for dirs in raw_dirs:  # np.random.randn(a.shape[1], dirs_per_repeat) in PGGAN
        dirs = dirs / np.sqrt(np.sum(np.square(dirs), axis=0, keepdims=True))
        dirs = dirs.astype(np.float32)
        proj_a = np.sort(np.matmul(a, dirs), axis=0)
        proj_b = np.sort(np.matmul(b, dirs), axis=0)
        results.append(np.mean(np.abs(proj_a - proj_b)))
    return np.mean(results)


def _np_swd(images1, images2, seed=0):
    """PGGAN's API.feed/end for two uint8 sets, with gankit's draws of positions/directions."""
    res = swd_resolutions(images1.shape[-1])
    pos1 = patch_positions(images1, res, 128, 7, seed)
    pos2 = patch_positions(images2, res, 128, 7, seed)
    levels1 = _np_laplacian_pyramid(images1.numpy(), len(res))
    levels2 = _np_laplacian_pyramid(images2.numpy(), len(res))
    gen = torch.Generator().manual_seed(seed)
    dists = []
    for lvl in range(len(res)):
        d1 = _np_finalize(_np_descriptors(levels1[lvl], 7, 128, *(p.numpy() for p in pos1[lvl])))
        d2 = _np_finalize(_np_descriptors(levels2[lvl], 7, 128, *(p.numpy() for p in pos2[lvl])))
        raw = torch.randn(4, d1.shape[1], 128, generator=gen, dtype=torch.float64).numpy()
        dists.append(_np_sliced_wasserstein(d1, d2, raw) * 1e3)
    return dists + [np.mean(dists)]


def _faces(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return generate_toy_faces(n, size, seed=seed)


def _blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma == 0:
        return images
    r = int(3 * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    x = images.float().reshape(-1, 1, *images.shape[-2:])
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(F.conv2d(x, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    return x.reshape(images.shape).round().clamp(0, 255).to(torch.uint8)


def _noisy(images: torch.Tensor, sigma: float, seed: int = 7) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed)) * sigma
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------- SWD definition


def test_pyramid_matches_pggans_scipy_filters():
    x = _faces(4, 64)
    ours = laplacian_pyramid(x.float(), 3)
    ref = _np_laplacian_pyramid(x.numpy(), 3)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.numpy(), b, rtol=0, atol=2e-4)  # 0..255 scale, float32


@pytest.mark.parametrize("size", [32, 64])
def test_swd_equals_the_pggan_transcription(size):
    """Tolerance: relative 2e-5 per level (float32 filters, sums and matmuls on both sides;
    they agree to 5e-6 on the machine of the docs)."""
    a, b = _faces(48, size, seed=1), _faces(48, size, seed=2)
    b = _noisy(b, 6.0)
    ours = sliced_wasserstein_distance(a, b, seed=3)
    ref = _np_swd(a, b, seed=3)
    assert list(ours) == [f"swd_{r}" for r in swd_resolutions(size)] + ["swd"]
    np.testing.assert_allclose(list(ours.values()), ref, rtol=2e-5)
    assert min(ref) > 1.0  # a comparison of non-trivial distances


def test_swd_of_a_set_against_itself_is_zero_and_halves_are_close():
    faces = _faces(512, 32)
    assert sliced_wasserstein_distance(faces, faces, seed=5) == {"swd_32": 0.0, "swd_16": 0.0, "swd": 0.0}
    halves = sliced_wasserstein_distance(faces[:256], faces[256:])["swd"]
    blurred = sliced_wasserstein_distance(faces[:256], _blur(faces[256:], 1.0))["swd"]
    noisy = sliced_wasserstein_distance(faces[:256], _noisy(faces[256:], 8.0))["swd"]
    assert 0 < halves < 0.5 * min(blurred, noisy), (halves, blurred, noisy)


def test_swd_grows_monotonically_with_noise_and_blur():
    faces = _faces(256, 32)
    real, other = faces[:128], faces[128:]
    clean = sliced_wasserstein_distance(real, other)["swd"]
    noise = [clean] + [sliced_wasserstein_distance(real, _noisy(other, s))["swd"] for s in (4, 8, 16, 32)]
    blur = [clean] + [sliced_wasserstein_distance(real, _blur(other, s))["swd"] for s in (0.6, 1.0, 1.6, 2.5)]
    assert all(x < y for x, y in zip(noise, noise[1:])), noise
    assert all(x < y for x, y in zip(blur, blur[1:])), blur


def test_swd_input_errors_are_one_line():
    x = _faces(4, 64)
    cases = [
        ((x, x[:3]), "same size"),
        ((x[..., :8, :8], x[..., :8, :8]), "at least 16x16"),
        ((x[..., :, :16], x[..., :, :16]), "square"),
        ((x[..., :33, :33], x[..., :33, :33]), "divisible by 2"),
    ]
    for args, match in cases:
        with pytest.raises(ConfigError, match=match) as info:
            sliced_wasserstein_distance(*args)
        assert "\n" not in str(info.value)


def test_swd_is_finite_for_constant_images():
    const = torch.full((8, 3, 16, 16), 128, dtype=torch.uint8)
    value = sliced_wasserstein_distance(const, _faces(8, 16))["swd"]
    assert np.isfinite(value) and value > 0


_image_sets = st.integers(0, 2**31 - 1).map(
    lambda s: torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8,
                            generator=torch.Generator().manual_seed(s))
)


@settings(max_examples=15, deadline=None)
@given(a=_image_sets, b=_image_sets, seed=st.integers(0, 1000))
def test_swd_is_symmetric_and_non_negative(a, b, seed):
    ab = sliced_wasserstein_distance(a, b, seed=seed)
    ba = sliced_wasserstein_distance(b, a, seed=seed)
    # Positions depend on each image only, so at a fixed seed the symmetry is exact up to
    # float rounding (much tighter than the sampling noise it is allowed).
    np.testing.assert_allclose(list(ab.values()), list(ba.values()), rtol=1e-5, atol=1e-6)
    assert all(v >= 0 for v in ab.values())


@settings(max_examples=15, deadline=None)
@given(a=_image_sets, b=_image_sets, perm_seed=st.integers(0, 1000))
def test_swd_does_not_depend_on_the_order_of_images(a, b, perm_seed):
    g = torch.Generator().manual_seed(perm_seed)
    pa, pb = torch.randperm(6, generator=g), torch.randperm(6, generator=g)
    base = sliced_wasserstein_distance(a, b)
    shuffled = sliced_wasserstein_distance(a[pa], b[pb])
    np.testing.assert_allclose(list(shuffled.values()), list(base.values()), rtol=1e-5, atol=1e-6)


def test_swd_seed_changes_the_draws_and_duplicates_get_their_own_positions():
    a, b = _faces(16, 16, seed=1), _faces(16, 16, seed=2)
    assert sliced_wasserstein_distance(a, b, seed=0) != sliced_wasserstein_distance(a, b, seed=1)
    twice = torch.cat([a[:1], a[:1]])
    (rows, cols), = patch_positions(twice, [16])
    assert not (torch.equal(rows[0], rows[1]) and torch.equal(cols[0], cols[1]))


# ---------------------------------------------------------------------------- MS-SSIM


def test_ms_ssim_diversity_is_torchmetrics_on_disjoint_random_pairs():
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    x = _faces(20, 64)
    value = ms_ssim_diversity(x, num_pairs=7, seed=4)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(4))[:14]
    s = ms_ssim_settings(64)
    direct = multiscale_structural_similarity_index_measure(
        x[perm[0::2]].float() / 255, x[perm[1::2]].float() / 255, data_range=1.0,
        betas=tuple(s["betas"]), reduction="none",
    )
    assert value == pytest.approx(float(direct.double().mean()), rel=1e-6)
    assert s["scales"] == 3 and s["kernel_size"] == 11 and sum(s["betas"]) == pytest.approx(1.0)
    assert ms_ssim_settings(32)["scales"] == 2 and ms_ssim_settings(256)["scales"] == 5


def test_ms_ssim_diversity_rises_as_samples_collapse():
    faces = _faces(64, 32)
    diverse = ms_ssim_diversity(faces)
    half = ms_ssim_diversity(torch.cat([faces[:2]] * 32))  # two faces, ~half the pairs equal
    collapsed = ms_ssim_diversity(torch.cat([faces[:1]] * 64))
    assert diverse < half < collapsed == pytest.approx(1.0)


def test_ms_ssim_refuses_what_it_cannot_measure_in_one_line():
    for images, match in [
        (_faces(4, 16), "at least 22x22"),
        (_faces(1, 32), "pairs"),
    ]:
        with pytest.raises(ConfigError, match=match) as info:
            ms_ssim_diversity(images)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="num_pairs"):
        ms_ssim_diversity(_faces(6, 32), num_pairs=4)


# ---------------------------------------------------------------------------- evaluate


def test_evaluate_image_metrics_with_provenance():
    real = _faces(96, 32, seed=0)
    calls = []

    def sampler(n):
        calls.append(n)
        return _faces(n, 32, seed=10 + len(calls)).float() / 127.5 - 1

    res = evaluate(sampler, real, metrics=["fid", "swd", "ms_ssim"], num_samples=64,
                   batch_size=32, use_cache=False, reference_id="faces-96")
    assert calls == [32, 32]  # drawn once, shared by the extractor and the image metrics
    data = json.loads(res.to_json())
    assert set(data["values"]) == {"fid", "swd_32", "swd_16", "swd", "ms_ssim"}
    swd = data["settings"]["swd"]
    assert swd["num_images"] == 64 and swd["resolutions"] == [32, 16]
    assert (swd["nhood_size"], swd["nhoods_per_image"], swd["dir_repeats"], swd["dirs_per_repeat"]) == (
        7, 128, 4, 128)
    ms = data["settings"]["ms_ssim"]
    assert ms["pairs"] == 32 and ms["scales"] == 2 and "torchmetrics" in ms["implementation"]
    assert data["extractor"].startswith("tiny") and data["num_real"] == 96
    assert any("SWD depends on the image count" in n for n in data["notes"])
    assert any("2 of Wang's 5 scales" in n for n in data["notes"])
    # the same images give the same SWD whichever way they arrive
    fakes = torch.cat([_faces(32, 32, seed=11), _faces(32, 32, seed=12)])
    alone = evaluate(fakes, real, metrics=["swd"], reference_id="faces-96")
    assert alone["swd"] == pytest.approx(res["swd"], rel=1e-6)
    assert alone.extractor == "none" and alone.num_real == 96


def test_evaluate_image_metric_errors_are_one_line():
    real = _faces(8, 32)
    stats = compute_stats(real, "tiny", use_cache=False)
    for kwargs, match in [
        (dict(reference=stats, metrics=["swd"]), "reference images"),
        (dict(reference=_faces(8, 16), metrics=["swd"]), "one shape"),
        (dict(reference=real, metrics=["swd", "ssim"]), "unknown metrics"),
    ]:
        with pytest.raises(ConfigError, match=match) as info:
            evaluate(real, use_cache=False, **kwargs)
        assert "\n" not in str(info.value)


def test_trainer_and_cli_evaluate_swd_and_ms_ssim(tmp_path, capsys):
    from gankit import Trainer, get_preset
    from gankit.cli import main

    faces = _faces(64, 32)
    torch.manual_seed(0)
    recipe = get_preset("dcgan_task1", image_size=32, base_channels=4, z_dim=8, batch_size=16,
                        sample_grid=3)
    t = Trainer(recipe, device="cpu", progress=False, out_dir=tmp_path, eval_every=2,
                eval_samples=32, eval_metrics=("swd", "ms_ssim", "kid"))
    t.fit(faces, max_steps=2)
    assert [r["step"] for r in t.eval_history] == [0, 2]
    for rec in t.eval_history:
        assert rec["swd"] > 0 and 0 <= rec["ms_ssim"] <= 1 and "swd_16" in rec
    out_json = tmp_path / "eval.json"
    code = main(["eval", str(tmp_path / "checkpoints" / "last.pt"), "--data", "toy-faces",
                 "--metrics", "swd,ms_ssim", "--num-samples", "32", "--num-reference", "64",
                 "--device", "cpu", "--no-progress", "--json", str(out_json)])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out_json.read_text())
    # same generator, latents, reference and seed as the last periodic evaluation
    assert data["values"]["swd"] == pytest.approx(t.eval_history[-1]["swd"], rel=1e-6)
    assert data["settings"]["swd"]["num_images"] == 32 and data["num_real"] == 64
    assert "swd=" in out and "ms_ssim=" in out
