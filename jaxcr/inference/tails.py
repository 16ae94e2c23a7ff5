"""Heavy tails of one sky's spectrum: a multivariate Student-t in place of the Gaussian.

The one-sky likelihood is Gaussian in ln C_ℓ with a covariance pooled over the design. Where
single skies scatter more than that covariance says (near the ρ = 0.01 edge of the wide box they
scatter 1.3-2.0 times as much), a Gaussian judges a sky far from the model by too small an error,
and one near it by too large an error. A Student-t of the same covariance lets each sky's χ²
set its own scale. Measured on the mock skies of the wide box (docs/fitting.md): at three of eight
(truth, observatory) pairs their χ² about the model is best described by ν ≈ 7-9, at the others by
ν ≥ 19 or a Gaussian, and all together by ν ≈ 17-20. A campaign's own realisations look far
heavier-tailed (ν ≈ 3-5), but through their pixel noise and the pooling over the design, not as
single skies do; so ν is given, and the Gaussian stays the default.

The multivariate Student-t with ν > 2 degrees of freedom and covariance Σ (scale Ψ = Σ(ν − 2)/ν) is
a Gaussian whose covariance is multiplied, per sky, by W = (ν − 2)/χ²_ν, a random factor of mean 1:
a population of skies that each scatter by their own amount. Of one block of n data,

    −2 ln L = (ν + n) ln(1 + D²/(ν − 2)) + ln det Σ + n ln((ν − 2)/ν)

up to a constant in ν (Kotz & Nadarajah 2004, Multivariate t Distributions, ch. 1); ν → ∞ gives the
Gaussian D² + ln det Σ. −2 ln L grows with D², so where Σ does not depend on the parameters the
best fit is the Gaussian's; the profile's curvature is scaled by (ν + n)/(ν − 2 + D²) at the best
fit, so a sky far from the model gets wider intervals and a typical one narrower intervals.

Here: the value of one block (:func:`student_m2lnl`), toys drawn from it (:func:`draw`), the
goodness of fit with parameters fitted (:func:`p_value`), the Fisher matrix of one block
(:func:`fisher_block`, Lange, Little & Taylor 1989, JASA 84, 881) and the ν that best describes a
set of residuals (:func:`dof_from_distances`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = ["student_m2lnl", "draw", "p_value", "fisher_block", "dof_from_distances", "DOF_RANGE"]

#: the degrees of freedom :func:`dof_from_distances` searches; at the upper end the t is a Gaussian within
#: the sampling error of any campaign (its excess kurtosis 6/(ν − 4) ≈ 0.006)
DOF_RANGE = (2.05, 1000.0)


def student_m2lnl(d2, log_det, n: int, dof):
    """−2 ln L of one multivariate-t block of n data with covariance Σ (module docstring) from its
    D² = rᵀΣ⁻¹r and ln det Σ."""
    return (dof + n) * jnp.log1p(d2 / (dof - 2.0)) + log_det + n * jnp.log((dof - 2.0) / dof)


def draw(
    mean: Float[Array, " n"],
    cov: Float[Array, "n n"],
    dof: float | None,
    key: Array,
    toys: int,
    normal: Float[Array, "toys n"] | None = None,
) -> Float[Array, "toys n"]:
    """``toys`` data vectors of a block: Gaussian with ``mean`` and ``cov`` where ``dof`` is None,
    else multivariate t with that covariance (each toy's Gaussian scaled by √W, W = (ν − 2)/χ²_ν,
    W drawn with ``fold_in(key, 1)``). The standard normals are ``normal`` where given, else drawn
    with ``key``."""
    if normal is None:
        normal = jax.random.normal(key, (toys, mean.shape[0]), dtype=mean.dtype)
    if dof is not None:
        chi2 = 2.0 * jax.random.gamma(jax.random.fold_in(key, 1), dof / 2.0, (toys, 1), dtype=mean.dtype)
        normal = normal * jnp.sqrt((dof - 2.0) / chi2)
    return mean + normal @ jnp.linalg.cholesky(cov).T


def p_value(d2s, sizes, dofs, n_fitted: int, draws: int = 200_000, seed: int = 0) -> float:
    """The probability of a total D² = Σ_b D²_b at least as large as the fit's, for blocks of
    ``sizes`` n_b, Gaussian (``dofs`` None) or t, with ``n_fitted`` parameters fitted.

    The fitted parameters take m_b = n_b − n_fitted·n_b/n of each block's degrees of freedom. A
    Gaussian block's D²_b is then χ²_{m_b}; a t block's is W·χ²_{m_b}, so D²_b ν/((ν − 2) m_b)
    follows F(m_b, ν) (exact where the mean is linear in the parameters and Σ fixed, as for a
    Gaussian's χ²). All Gaussian: the χ² distribution; one t block: the F distribution; else the sum
    by ``draws`` Monte Carlo draws of ``seed`` (the same numbers give the same p). NaN where no
    degrees of freedom are left."""
    from scipy import stats

    sizes = np.asarray(sizes, dtype=float)
    if sizes.sum() <= n_fitted:
        return float("nan")
    total, left = float(np.sum(d2s)), sizes - n_fitted * sizes / sizes.sum()
    if all(dof is None for dof in dofs):
        return float(stats.chi2.sf(total, sizes.sum() - n_fitted))
    if len(sizes) == 1:
        dof = float(dofs[0])
        return float(stats.f.sf(total * dof / ((dof - 2.0) * left[0]), left[0], dof))
    rng = np.random.default_rng(seed)
    sums = np.zeros(draws)
    for m, dof in zip(left, dofs):
        scale = 1.0 if dof is None else (dof - 2.0) / rng.chisquare(dof, draws)
        sums += scale * rng.chisquare(m, draws)
    return float((np.sum(sums >= total) + 1) / (draws + 1))


def fisher_block(dmu, dsig, inv, n: int, dof: float | None) -> Array:
    """The Fisher matrix of one block with mean μ(φ) and covariance Σ(φ) from ∂μ (n, p), ∂Σ
    (n, n, p) and Σ⁻¹. Gaussian: ∂_iμᵀΣ⁻¹∂_jμ + ½ tr(Σ⁻¹∂_iΣ Σ⁻¹∂_jΣ). Multivariate t (Lange,
    Little & Taylor 1989, with the scale Ψ = Σ(ν − 2)/ν): the same terms weighted by
    (ν + n)/(ν + n + 2), the mean's by ν/(ν − 2) besides, less tr(Σ⁻¹∂_iΣ) tr(Σ⁻¹∂_jΣ)/(2(ν + n + 2))."""
    mean_term = dmu.T @ inv @ dmu
    a = jnp.einsum("ab,bci->aci", inv, dsig)  # Σ⁻¹ ∂_iΣ
    cov_term = 0.5 * jnp.einsum("abi,baj->ij", a, a)
    if dof is None:
        return mean_term + cov_term
    weight = (dof + n) / (dof + n + 2.0)
    traces = jnp.einsum("aai->i", a)
    return weight * (dof / (dof - 2.0) * mean_term + cov_term) - jnp.outer(traces, traces) / (2.0 * (dof + n + 2.0))


def dof_from_distances(d2, n: int) -> tuple[float, dict]:
    """ν of the multivariate t of covariance Σ that best describes residuals of n data whose squared
    Mahalanobis distances D² = rᵀΣ⁻¹r are ``d2``: D² ν/((ν − 2) n) follows F(n, ν), and ν maximises
    the likelihood of the distances over :data:`DOF_RANGE` (its upper end: Gaussian within any
    sample's error). Returns ν and a record: ν, the number of distances, n, the gain in ln L over
    the Gaussian (D² ~ χ²_n), and D²'s median and 90/99 % quantiles beside the Gaussian's and the t's."""
    from scipy import optimize, stats

    d2 = np.asarray(d2, dtype=float).ravel()
    if d2.size < 10 or not np.all(np.isfinite(d2) & (d2 >= 0)):
        raise ValueError(f"d2 must hold at least 10 finite squared distances >= 0; got {d2.size}")

    def log_like(dof):
        c = dof / ((dof - 2.0) * n)
        return float(np.sum(stats.f.logpdf(d2 * c, n, dof) + np.log(c)))

    lo, hi = np.log(np.array(DOF_RANGE) - 2.0)
    best = optimize.minimize_scalar(lambda u: -log_like(2.0 + np.exp(u)), bounds=(lo, hi), method="bounded")
    dof = float(2.0 + np.exp(best.x))
    quantiles = (0.5, 0.9, 0.99)
    record = dict(
        dof=dof,
        distances=int(d2.size),
        multipoles=int(n),
        log_likelihood_gain=log_like(dof) - float(np.sum(stats.chi2.logpdf(d2, n))),
        quantiles=list(quantiles),
        d2_quantiles=np.quantile(d2, quantiles).tolist(),
        gaussian_quantiles=stats.chi2.ppf(quantiles, n).tolist(),
        student_quantiles=(stats.f.ppf(quantiles, n, dof) * (dof - 2.0) * n / dof).tolist(),
    )
    return dof, record
