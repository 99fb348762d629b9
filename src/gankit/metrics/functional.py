"""Sample-quality metrics computed from feature tensors: FID, KID, Inception Score, P/R.

Every function here takes plain tensors (features of shape ``(N, D)`` or class
probabilities of shape ``(N, C)``), knows nothing about images or networks, and computes
in float64 on the tensors' device. Only torch is needed.

* :func:`fid_from_stats` / :func:`fid_from_features` -- Frechet distance between two
  Gaussians (Heusel et al. 2017). The matrix square root term is computed as
  ``tr sqrt(sqrt(S1) S2 sqrt(S1))`` with symmetric eigendecompositions, which equals
  ``tr sqrtm(S1 S2)`` (the two products are similar matrices) but stays real and is
  well defined for singular covariances.
* :func:`kid_from_features` -- unbiased MMD^2 with the cubic polynomial kernel over
  random subsets (Binkowski et al. 2018), mean and standard deviation over subsets.
* :func:`inception_score_from_probs` / :func:`inception_score_from_logits` -- the
  Inception Score (Salimans et al. 2016), mean and standard deviation over splits.
* :func:`precision_recall` -- improved precision and recall with k-NN manifolds
  (Kynkaanniemi et al. 2019).

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> a = torch.randn(200, 8, generator=g)
    >>> round(fid_from_features(a, a), 6)
    0.0
"""

from __future__ import annotations

import torch
from torch import Tensor

from gankit.errors import ConfigError

__all__ = [
    "mean_cov",
    "fid_from_stats",
    "fid_from_features",
    "kid_from_features",
    "inception_score_from_probs",
    "inception_score_from_logits",
    "precision_recall",
]


def _as_features(x: Tensor, what: str, min_rows: int = 1) -> Tensor:
    """Checks ``x`` is a finite ``(N, D)`` tensor with ``N >= min_rows``; returns it as float64."""
    if not isinstance(x, Tensor):
        raise ConfigError(f"{what} must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    if x.dim() != 2:
        raise ConfigError(
            f"{what} must have shape (N, D), got {tuple(x.shape)}; flatten features first"
        )
    if x.shape[0] < min_rows:
        raise ConfigError(f"{what} has {x.shape[0]} rows but needs at least {min_rows}")
    x = x.detach().to(torch.float64)
    if not torch.isfinite(x).all():
        raise ConfigError(f"{what} contains NaN or infinite values; check the extractor input")
    return x


def _same_dim(a: Tensor, b: Tensor) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise ConfigError(
            f"feature dimensions differ ({a.shape[-1]} vs {b.shape[-1]}); "
            "compute both sets with the same extractor"
        )


def mean_cov(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance (divisor ``N - 1``, as ``numpy.cov``) of features.

    Args:
        features: ``(N, D)`` tensor with ``N >= 2``.

    Returns:
        ``(mean, cov)`` as float64 tensors of shapes ``(D,)`` and ``(D, D)``.

    Example:
        >>> mu, cov = mean_cov(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
        >>> mu.tolist(), cov.tolist()
        ([1.0, 2.0], [[2.0, 2.0], [2.0, 2.0]])
    """
    x = _as_features(features, "features", min_rows=2)
    mu = x.mean(dim=0)
    xc = x - mu
    cov = xc.T @ xc / (x.shape[0] - 1)
    return mu, cov


def _resolved(w: Tensor) -> Tensor:
    """Eigenvalues of a PSD matrix with those below rounding level set to 0.

    Rounding leaves eigenvalues of order ``eps * max`` (of either sign) in a null space;
    a square root would blow them up to ``sqrt(eps * max)`` each, so they are zeroed.
    """
    tol = w.abs().max() * w.shape[0] * torch.finfo(w.dtype).eps
    return torch.where(w > tol, w, torch.zeros_like(w))


def _psd_sqrt(s: Tensor) -> Tensor:
    """Symmetric square root of a PSD matrix."""
    w, v = torch.linalg.eigh(s)
    return (v * _resolved(w).sqrt()) @ v.T


def fid_from_stats(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)``, in float64.

    Args:
        mu1: Mean ``(D,)`` of the first set (e.g. generated samples).
        sigma1: Covariance ``(D, D)`` of the first set.
        mu2: Mean ``(D,)`` of the second set (e.g. the reference dataset).
        sigma2: Covariance ``(D, D)`` of the second set.

    Returns:
        The FID as a Python float (``>= 0`` up to rounding).

    Example:
        >>> mu, s = torch.zeros(3), torch.eye(3)
        >>> fid_from_stats(mu, s, mu + 1, s)
        3.0
    """
    mu1, mu2 = (torch.as_tensor(m).detach().to(torch.float64).reshape(-1) for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(s).detach().to(torch.float64) for s in (sigma1, sigma2))
    d = mu1.shape[0]
    if mu2.shape[0] != d or s1.shape != (d, d) or s2.shape != (d, d):
        raise ConfigError(
            f"statistics do not match: means {mu1.shape[0]} and {mu2.shape[0]}, covariances "
            f"{tuple(s1.shape)} and {tuple(s2.shape)}; compute both with the same extractor"
        )
    s2 = s2.to(s1.device)
    mu2 = mu2.to(mu1.device)
    diff = mu1 - mu2
    root1 = _psd_sqrt((s1 + s1.T) / 2)
    middle = root1 @ s2 @ root1
    # sqrt(S1) S2 sqrt(S1) is symmetric PSD: real eigenvalues, >= 0 up to rounding.
    tr_covmean = _resolved(torch.linalg.eigvalsh((middle + middle.T) / 2)).sqrt().sum()
    fid = diff.dot(diff) + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean
    return float(fid)


def fid_from_features(features1: Tensor, features2: Tensor) -> float:
    """FID between two feature sets (means and covariances estimated from the rows).

    Args:
        features1: ``(N1, D)`` features, ``N1 >= 2``.
        features2: ``(N2, D)`` features, ``N2 >= 2``.

    Returns:
        The FID as a Python float.

    Example:
        >>> a = torch.tensor([[0.0], [2.0]])
        >>> fid_from_features(a, a + 3)
        9.0
    """
    mu1, s1 = mean_cov(features1)
    mu2, s2 = mean_cov(features2)
    _same_dim(mu1, mu2)
    return fid_from_stats(mu1, s1, mu2, s2)


def _polynomial_kernel(x: Tensor, y: Tensor, degree: int, gamma: float, coef: float) -> Tensor:
    return (gamma * (x @ y.T) + coef) ** degree


def _mmd2_unbiased(x: Tensor, y: Tensor, degree: int, gamma: float, coef: float) -> Tensor:
    """Unbiased MMD^2 of two equal-size samples: within-set sums leave out the diagonal."""
    m = x.shape[0]
    k_xx = _polynomial_kernel(x, x, degree, gamma, coef)
    k_yy = _polynomial_kernel(y, y, degree, gamma, coef)
    k_xy = _polynomial_kernel(x, y, degree, gamma, coef)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (
        m * (m - 1)
    )
    return within - 2 * k_xy.mean()


def kid_from_features(
    features1: Tensor,
    features2: Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 averaged over random subsets.

    Each subset draws ``m = min(subset_size, N1, N2)`` rows without replacement from each
    set and computes the unbiased MMD^2 estimate with the polynomial kernel
    ``k(x, y) = (gamma * x.y + coef) ** degree``. Unbiased means the expectation over
    draws of two sets from one distribution is exactly 0, so single values may be negative.

    Args:
        features1: ``(N1, D)`` features.
        features2: ``(N2, D)`` features.
        subsets: Number of random subsets to average over.
        subset_size: Rows per subset (clamped to the smaller set).
        degree: Polynomial kernel degree (3 in the KID paper).
        gamma: Kernel scale; ``None`` means ``1 / D``.
        coef: Kernel offset.
        generator: CPU ``torch.Generator`` for the subset draws; ``None`` uses a fresh one
            seeded with 0, so repeated calls give the same number (the global RNG is untouched).

    Returns:
        ``(mean, std)`` over subsets; ``std`` is the population standard deviation
        (``ddof=0``, as torch-fidelity and torchmetrics report it).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = torch.randn(100, 4, generator=g), torch.randn(100, 4, generator=g)
        >>> mean, std = kid_from_features(a, b + 5, subsets=10, subset_size=50)
        >>> mean > 1.0
        True
    """
    x = _as_features(features1, "features1", min_rows=2)
    y = _as_features(features2, "features2", min_rows=2)
    _same_dim(x, y)
    if subsets < 1 or subset_size < 2 or degree < 1:
        raise ConfigError(
            f"KID needs subsets >= 1, subset_size >= 2 and degree >= 1, got {subsets}, "
            f"{subset_size} and {degree}"
        )
    y = y.to(x.device)
    m = min(subset_size, x.shape[0], y.shape[0])
    gamma = 1.0 / x.shape[1] if gamma is None else float(gamma)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    values = []
    for _ in range(subsets):
        ix = torch.randperm(x.shape[0], generator=generator)[:m].to(x.device)
        iy = torch.randperm(y.shape[0], generator=generator)[:m].to(x.device)
        values.append(_mmd2_unbiased(x[ix], y[iy], degree, gamma, coef))
    t = torch.stack(values)
    return float(t.mean()), float(t.std(unbiased=False))


def inception_score_from_probs(probs: Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` from class probabilities.

    The rows are cut, in order, into ``splits`` near-equal contiguous chunks; ``p(y)`` is
    the mean of a chunk and the score is computed per chunk.

    Args:
        probs: ``(N, C)`` non-negative rows summing to 1, ``N >= splits``.
        splits: Number of chunks.

    Returns:
        ``(mean, std)`` of the per-chunk scores (population std, ``ddof=0``).

    Example:
        >>> inception_score_from_probs(torch.eye(4), splits=1)
        (4.0, 0.0)
    """
    p = _as_features(probs, "probs", min_rows=max(1, splits))
    if splits < 1:
        raise ConfigError(f"splits must be >= 1, got {splits}")
    if (p < 0).any() or not torch.allclose(p.sum(dim=1), torch.ones_like(p[:, 0]), atol=1e-3):
        raise ConfigError(
            "probs rows must be non-negative and sum to 1; "
            "pass logits to inception_score_from_logits instead"
        )
    scores = []
    for chunk in torch.tensor_split(p, splits, dim=0):
        marginal = chunk.mean(dim=0, keepdim=True)
        # xlogy gives 0 * log 0 = 0, so one-hot rows need no epsilon.
        kl = torch.special.xlogy(chunk, chunk) - torch.special.xlogy(chunk, marginal)
        scores.append(kl.sum(dim=1).mean().exp())
    t = torch.stack(scores)
    return float(t.mean()), float(t.std(unbiased=False))


def inception_score_from_logits(logits: Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score from classifier logits (softmax in float64, then as from probs).

    Args:
        logits: ``(N, C)`` unnormalised class scores.
        splits: Number of chunks (see :func:`inception_score_from_probs`).

    Returns:
        ``(mean, std)`` over chunks.

    Example:
        >>> inception_score_from_logits(torch.zeros(10, 5), splits=2)
        (1.0, 0.0)
    """
    x = _as_features(logits, "logits")
    return inception_score_from_probs(torch.softmax(x, dim=1), splits=splits)


def _kth_neighbour_radii(x: Tensor, k: int, chunk_size: int) -> Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row of ``x``."""
    radii = []
    for start in range(0, x.shape[0], chunk_size):
        d = torch.cdist(x[start : start + chunk_size], x)
        # k + 1 because the smallest distance of each row is to itself (0).
        radii.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _fraction_inside(points: Tensor, centres: Tensor, radii: Tensor, chunk_size: int) -> float:
    """Fraction of ``points`` inside at least one ball ``(centre_i, radius_i)``."""
    inside = 0
    for start in range(0, points.shape[0], chunk_size):
        d = torch.cdist(points[start : start + chunk_size], centres)
        inside += int((d <= radii.unsqueeze(0)).any(dim=1).sum())
    return inside / points.shape[0]


def precision_recall(
    real_features: Tensor, fake_features: Tensor, k: int = 3, chunk_size: int = 1024
) -> tuple[float, float]:
    """Improved precision and recall with k-NN manifolds (Kynkaanniemi et al. 2019).

    Each set's manifold is the union of balls around its points whose radius is the
    distance to the point's k-th nearest neighbour in the same set. Precision is the
    fraction of fake points inside the real manifold (fidelity); recall is the fraction
    of real points inside the fake manifold (coverage).

    Args:
        real_features: ``(N_r, D)`` features of real samples, ``N_r > k``.
        fake_features: ``(N_f, D)`` features of generated samples, ``N_f > k``.
        k: Neighbour rank of the radius (3 in the paper).
        chunk_size: Rows per pairwise-distance block (bounds memory to ``chunk_size * N``).

    Returns:
        ``(precision, recall)``, each in ``[0, 1]``.

    Example:
        >>> a = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
        >>> precision_recall(a, a)
        (1.0, 1.0)
    """
    if k < 1:
        raise ConfigError(f"precision/recall needs k >= 1, got {k}")
    # float32 distances: ties at exactly the radius have measure zero, and float64 pairwise
    # distances over tens of thousands of rows would be much slower.
    real = _as_features(real_features, "real_features", min_rows=k + 1).float()
    fake = _as_features(fake_features, "fake_features", min_rows=k + 1).float().to(real.device)
    _same_dim(real, fake)
    real_radii = _kth_neighbour_radii(real, k, chunk_size)
    fake_radii = _kth_neighbour_radii(fake, k, chunk_size)
    precision = _fraction_inside(fake, real, real_radii, chunk_size)
    recall = _fraction_inside(real, fake, fake_radii, chunk_size)
    return precision, recall
