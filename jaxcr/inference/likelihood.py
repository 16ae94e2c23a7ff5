"""The likelihood of an observed spectrum given the model's realisations (full ℓ-ℓ' covariance).

The observed spectrum is modelled as C_ℓ^obs = a C_ℓ^sky(θ) + N + ε_ℓ, with a = (|∇n/n| r_L)²
(profiled analytically, or fixed when the gradient is known), N the observatory's shot noise
and ε_ℓ the measurement error σ_ℓ of the file. C_ℓ^sky is the spectrum of the sky we happen to
live in: one realisation of the turbulence (or the mean of R_sky realisations for a synthetic
spectrum, ``ObservedSpectrum.sky_realisations``). Its expectation is the ensemble mean
⟨C_ℓ⟩(θ) and its scatter the cosmic variance S_ℓℓ'(θ), the ℓ-ℓ' covariance of per-realisation
spectra (they scatter by ~100 % and are correlated across ℓ: a realisation that wanders far
raises every multipole). Hence

    χ² = rᵀ Σ⁻¹ r,   r = C^obs − N − a⟨C⟩,   Σ = a² S (1/R_sky + 1/N_B) + diag(σ_ℓ²),

where the 1/N_B term is the model's own sampling error (⟨C⟩ and S are estimated from the N_B
model realisations at θ; Σ is held fixed when differentiating).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..observations import ObservedSpectrum

__all__ = [
    "observed_multipoles",
    "sky_covariance",
    "chi2_profiled",
    "gls_chi2",
    "fixed_sigma_chi2",
    "AMPLITUDE_ITERATIONS",
]

AMPLITUDE_ITERATIONS = 8  # fixed-point iterations of the profiled amplitude (reach ~1e-12)


def observed_multipoles(observed: ObservedSpectrum, n_ell: int):
    """The observed multipoles ℓ < n_ell (those a model spectrum of length n_ell has) and their rows.

    Raises:
        ValueError: when no observed multipole is inside the model's range.
    """
    ell = np.asarray(observed.ell)
    sel = ell < n_ell
    if not sel.any():
        raise ValueError(
            f"no multipole of the spectrum ({observed.observatory}, ℓ = {ell.min()}..{ell.max()}) lies "
            f"within the model's ℓ ≤ {n_ell - 1}: raise the model's nside (lmax = 2·nside − 1)"
        )
    return ell[sel], sel


def sky_covariance(cov_cl, ell, observed: ObservedSpectrum, n_model: int):
    """S (1/R_sky + 1/N_B) on the observed multipoles: the expected scatter between the data's
    sky and the model mean before the amplitude a² and the measurement errors are added."""
    return cov_cl[np.ix_(ell, ell)] * (1.0 / observed.sky_realisations + 1.0 / n_model)


def chi2_profiled(mean_cl, cov_cl, observed: ObservedSpectrum, n_model: int, amplitude=None):
    """χ² = rᵀΣ⁻¹r of C^model = a⟨C_ℓ⟩ + N against the observed ℓ (≤ model lmax); a profiled if None.

    ``mean_cl`` (L,) and ``cov_cl`` (L, L) are the mean and the per-realisation covariance
    (:func:`jaxcr.inference.model.spectrum_covariance`) of ``n_model`` model realisations.
    Σ = a² S (1/R_sky + 1/N_B) + diag(σ_ℓ²) (module docstring). The profiled amplitude is the
    generalised-least-squares a = mᵀΣ⁻¹o / mᵀΣ⁻¹m, iterated to its fixed point because Σ depends
    on a (the map a ↦ a is a contraction: 8 iterations reach ~1e-12). Σ⁻¹ is held fixed in the
    derivative (``stop_gradient``). Returns (χ², a); a non-finite χ² raises, also under ``jit``.
    """
    ell, sel = observed_multipoles(observed, mean_cl.shape[-1])
    sky = jax.lax.stop_gradient(sky_covariance(cov_cl, ell, observed, n_model))
    o = jnp.asarray(observed.cl[sel]) - observed.noise_level
    meas = jnp.diag(jnp.asarray(observed.sigma[sel]) ** 2)
    chi2, a = gls_chi2(mean_cl[ell], sky, o, meas, amplitude)
    chi2 = eqx.error_if(
        chi2,
        ~jnp.isfinite(chi2),
        "χ² is not finite: check the model spectra (finite, not all zero) and the spectrum (σ_ℓ > 0, finite C_ℓ)",
    )
    return chi2, a


def gls_chi2(m, sky, o, meas, amplitude=None):
    """χ² and amplitude of o ≈ a m with Σ = a² sky + meas (see :func:`chi2_profiled`);
    ``sky=None``: Σ = meas, fixed, and the profiled amplitude needs no fixed-point iteration."""

    def gls_amplitude(sigma):
        w = jnp.linalg.solve(sigma, m)
        return jnp.dot(w, o) / jnp.dot(w, m)

    def covariance(a):
        return jax.lax.stop_gradient(meas if sky is None else a**2 * sky + meas)

    if amplitude is None:
        a = jax.lax.stop_gradient(gls_amplitude(meas))
        for _ in range(0 if sky is None else AMPLITUDE_ITERATIONS):
            a = jax.lax.stop_gradient(gls_amplitude(covariance(a)))
        sigma = covariance(a)
        a = gls_amplitude(sigma)
    else:
        a = amplitude
        sigma = covariance(a)
    r = o - a * m
    return jnp.dot(r, jnp.linalg.solve(sigma, r)), a


def fixed_sigma_chi2(m, o, sigma, amplitude=None):
    """χ² and amplitude of o ≈ a m with the covariance Σ held fixed (absolute units)."""
    return gls_chi2(m, None, o, sigma, amplitude)
