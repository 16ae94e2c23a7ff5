"""Spectrum estimators, background methods and the shot noise of each estimator.

A relative-intensity map δI_i = N_i/⟨N_i⟩ − 1 is observed through weights w_i (the field of
view: 1 in the band, 0 outside). Its angular power spectrum is estimated in one of three ways
(:class:`Estimator`), and every spectrum in jaxcr says which:

* ``PSEUDO``: the pseudo-C_ℓ of w·δI as healpy ``anafast`` gives it, no correction (what IceCube
  and HAWC publish in their single-detector analyses);
* ``FSKY``: the pseudo-C_ℓ divided by f_sky = ⟨w²⟩ (mean over all pixels), the convention of the
  paper's noise level N ≈ 4π f_sky/N_CR (Sec. 1);
* ``K_CORRECTED``: the pseudo-C_ℓ divided by K = ¼[3(sin δ2 − sin δ1) + sin³δ1 − sin³δ2] of
  the declination band δ1 < δ < δ2 (the combined HAWC-IceCube analysis, Abeysekara et al. 2019,
  ApJ 871 96; K = 1 on the full sky).

Shot noise. With n_i expected events in pixel i, Poisson counts give var(δI_i) = 1/n_i, and a
white map of pixel variances v_i has the pseudo-spectrum (4π/N_pix²) Σ_i w_i² v_i at every ℓ.
So the noise level of the pseudo-C_ℓ is N = (4π/N_pix²) Σ_i w_i²/n_i, which for uniform exposure
is 4π f_sky²/N_CR, and each estimator divides it by its normalisation (FSKY: 4π f_sky/N_CR, the
paper's N). :func:`shot_noise_level` computes it from an expected-counts map.

The background (the expected counts ⟨N_i⟩) is estimated by the observatories from the data
(:class:`BackgroundMethod`): time-scrambling over a sidereal day keeps the declination profile
of the data, so the part of δI that depends on declination only (m = 0 in equatorial
coordinates) is lost (:func:`jaxcr.observatory.remove_ring_means`).
"""

from __future__ import annotations

import numpy as np

from . import _checks
from .options import BackgroundMethod, Estimator, as_option

__all__ = ["Estimator", "BackgroundMethod", "band_k_factor", "estimator_normalisation", "shot_noise_level"]


FIG2_GRADIENTS = {"parallel": (0.0, 0.0, 1.0), "perpendicular": (1.0, 0.0, 0.0)}
"""Unit CR gradients parallel and perpendicular to B0 = ẑ: the two skies of the paper's Fig. 2."""


def band_k_factor(dec_min_deg: float, dec_max_deg: float) -> float:
    """K = ¼[3(sin δ2 − sin δ1) + sin³δ1 − sin³δ2] = ¾ ∫ cos³δ dδ over the band (1 on the full sky)."""
    for name, v in (("dec_min_deg", dec_min_deg), ("dec_max_deg", dec_max_deg)):
        _checks.check_finite(name, v)
    if not -90.0 <= dec_min_deg < dec_max_deg <= 90.0:
        raise ValueError(f"need -90 <= dec_min_deg < dec_max_deg <= 90; got {dec_min_deg}, {dec_max_deg}")
    s1, s2 = np.sin(np.radians(dec_min_deg)), np.sin(np.radians(dec_max_deg))
    return float(0.25 * (3 * (s2 - s1) + s1**3 - s2**3))


def estimator_normalisation(
    estimator: Estimator | str, weights, dec_min_deg: float = -90.0, dec_max_deg: float = 90.0
) -> float:
    """The number the pseudo-C_ℓ of w·δI is divided by: 1 (PSEUDO), f_sky = ⟨w²⟩ (FSKY) or the band's
    K (K_CORRECTED)."""
    estimator = as_option(Estimator, "estimator", estimator)
    if estimator == Estimator.PSEUDO:
        return 1.0
    if estimator == Estimator.FSKY:
        w = np.asarray(weights, dtype=float)
        return float(np.mean(w**2))
    return band_k_factor(dec_min_deg, dec_max_deg)


def shot_noise_level(
    expected_counts,
    weights,
    estimator: Estimator | str = Estimator.PSEUDO,
    dec_min_deg: float = -90.0,
    dec_max_deg: float = 90.0,
) -> float:
    """N = (4π/N_pix²) Σ_i w_i²/n_i over observed pixels, divided by the estimator's normalisation.

    Args:
        expected_counts: n_i, the expected events per pixel (a HEALPix map; > 0 where w_i > 0).
        weights: w_i in [0, 1] (the mask; exposure weighting if the analysis uses it).
        estimator: which spectrum the level is for (:class:`Estimator`).
        dec_min_deg, dec_max_deg: the band, for the K-corrected estimator.
    """
    n = np.asarray(expected_counts, dtype=float)
    w = np.asarray(weights, dtype=float)
    if n.shape != w.shape or n.ndim != 1:
        raise ValueError(f"expected_counts and weights must be maps of one shape; got {n.shape} and {w.shape}")
    observed = w > 0
    if not observed.any():
        raise ValueError("weights are zero everywhere: no pixel is observed")
    if not np.all(np.isfinite(n[observed])) or np.any(n[observed] <= 0):
        raise ValueError("expected_counts must be finite and > 0 in every observed pixel")
    pseudo = 4 * np.pi / n.size**2 * float(np.sum(w[observed] ** 2 / n[observed]))
    return pseudo / estimator_normalisation(estimator, w, dec_min_deg, dec_max_deg)
