"""The realisations' log moments with the simulation's pixel noise taken out of their scatter.

A campaign's map at nside samples a sky with structure below the pixel size; that structure
aliases into every multipole as a white pixel noise (Eq. 12) of level N̂ per map. Its mean,
N̂·t_ℓ through the analysis, is subtracted from each realisation's spectrum; its fluctuations stay.
They widen the scatter of ln C_ℓ and, through the logarithm's curvature (Jensen), lower the
realisations' mean of ln C_ℓ: a single real sky, which has no pixel noise, then sits above the
campaign's ⟨ln C_ℓ⟩ and inside too wide an error.

:func:`deconvolved_log_moments` removes both. Per design point and multipole it takes the
corrected spectra c_r = Ĉ_r − N̂_r t_ℓ as the sky's spectrum S_r plus a Gaussian noise fluctuation
of variance v_ℓ N̂_r² (1 + 2 S_r/(t_ℓ N̂_r)) (the analysis' variance of a unit white-noise
spectrum v_ℓ and its signal × noise cross term, the same form as the offset log-normal
likelihood's), with ln S_r ~ Normal(μ_ℓ, s_ℓ²), and maximises the marginal likelihood of the
realisations over (μ_ℓ, s_ℓ) (Gauss-Hermite quadrature over ln S). Across multipoles the noise is
independent, so the covariance of the posterior means E[ln S_r | c_r] is that of ln S attenuated
by the reliability β_ℓ = Var(E[ln S | c])/s_ℓ² at each end (exact for Gaussian variables); the
off-diagonal covariance is divided by β_ℓ β_ℓ'. Where the noise is negligible this is the plain
log-normal estimate (tested); no realisation is raised to a floor. Spectra without pixel noise
(N̂ = 0 everywhere: not made from maps) have nothing to deconvolve and are refused.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize

from ..analysis import white_noise_variance

__all__ = ["deconvolved_log_moments"]

_NODES, _WEIGHTS = np.polynomial.hermite.hermgauss(64)
_LOG_S_MIN = np.log(1e-6)  # identical realisations: the scatter's estimate stops at 10⁻⁶ e-folds


def _noise_variance(s, noise, t_ell, v_ell):
    """Variance of the pixel noise's fluctuation of a corrected spectrum whose sky spectrum is s."""
    return np.maximum(white_noise_variance(s, noise, t_ell, v_ell), 1e-300)


def _log_terms(c, noise, t_ell, v_ell, mu, s):
    """ln of each realisation's marginal density's quadrature terms, (R, nodes), and their ln S.

    Adaptive Gauss-Hermite: each realisation's nodes sit where its integrand lies, a Gaussian in
    ln S that combines the prior Normal(μ, s²) with the noise kernel's width in ln S at S = c (the
    prior alone where c ≤ 0), so that a noise kernel much narrower than s is resolved."""
    positive = c > 0
    width2 = _noise_variance(c, noise, t_ell, v_ell) / np.where(positive, c, 1.0) ** 2
    precision = 1.0 / s**2 + np.where(positive, 1.0 / width2, 0.0)
    centre = (mu / s**2 + np.where(positive, np.log(np.where(positive, c, 1.0)) / width2, 0.0)) / precision
    tau = 1.0 / np.sqrt(precision)
    ln_s = centre[:, None] + np.sqrt(2.0) * tau[:, None] * _NODES  # (R, nodes)
    sky = np.exp(ln_s)
    var = _noise_variance(sky, noise[:, None], t_ell, v_ell)
    terms = (
        -0.5 * ((c[:, None] - sky) ** 2 / var + np.log(2 * np.pi * var))
        - 0.5 * ((ln_s - mu) / s) ** 2
        - np.log(np.sqrt(2 * np.pi) * s)
        + _NODES**2
        + np.log(_WEIGHTS * np.sqrt(2.0) * tau[:, None])
    )
    return terms, ln_s


def _fit_one(c, noise, t_ell, v_ell):
    """(μ, s², posterior means of ln S per realisation) of one multipole at one point."""
    positive = c[c > 0]
    start_mu = np.log(np.median(positive)) if positive.size else np.log(np.maximum(t_ell * noise.mean(), 1e-300))
    start_s = np.log(max(np.std(np.log(positive), ddof=1), 1e-3)) if positive.size > 2 else 0.0

    def nll(p):
        terms, _ = _log_terms(c, noise, t_ell, v_ell, p[0], np.exp(max(p[1], _LOG_S_MIN)))
        return -np.sum(np.logaddexp.reduce(terms, axis=1))

    best = scipy.optimize.minimize(
        nll, [start_mu, start_s], method="Nelder-Mead", options=dict(xatol=1e-8, fatol=1e-10, maxiter=4000)
    )
    mu, log_s = best.x[0], max(best.x[1], _LOG_S_MIN)
    terms, ln_s = _log_terms(c, noise, t_ell, v_ell, mu, np.exp(log_s))
    post = np.exp(terms - np.logaddexp.reduce(terms, axis=1, keepdims=True))
    return mu, np.exp(2 * log_s), np.sum(post * ln_s, axis=1)


def deconvolved_log_moments(c, pixel_noise, t_ell, v_ell):
    """⟨ln S_ℓ⟩ (L,) and Cov(ln S_ℓ, ln S_ℓ') (L, L) of one design point's sky spectra S without
    the pixel noise's fluctuations (module docstring).

    Args:
        c: the realisations' noise-corrected spectra Ĉ − N̂ t_ℓ, shape (R, L).
        pixel_noise: each realisation's white pixel-noise level N̂, shape (R,).
        t_ell, v_ell: mean and variance of the analysis' spectrum of unit white noise at the same
            multipoles (:meth:`jaxcr.analysis.Analysis.noise_response`), shape (L,).
    """
    c, pixel_noise = np.asarray(c, dtype=float), np.asarray(pixel_noise, dtype=float)
    n_real, n_ell = c.shape
    if not np.any(pixel_noise > 0):
        raise ValueError("pixel_noise is 0 for every realisation: nothing to deconvolve (take the plain log moments)")
    mus, variances, posterior = np.empty(n_ell), np.empty(n_ell), np.empty((n_real, n_ell))
    for i in range(n_ell):
        mus[i], variances[i], posterior[:, i] = _fit_one(c[:, i], pixel_noise, float(t_ell[i]), float(v_ell[i]))
    variances *= n_real / (n_real - 1)  # the maximum-likelihood variance, made unbiased like the plain covariance
    x = posterior - posterior.mean(0)
    cov = x.T @ x / (n_real - 1)
    reliability = np.clip(np.diag(cov) / variances, 1e-3, 1.0)
    cov = cov / np.outer(reliability, reliability)
    np.fill_diagonal(cov, variances)
    w, u = np.linalg.eigh(cov)  # the disattenuated matrix need not be positive definite: nearest one that is
    cov = (u * np.maximum(w, 1e-6 * w.max())) @ u.T
    return mus, cov
