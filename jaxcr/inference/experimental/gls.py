"""The generalised-least-squares χ² of an observed spectrum given model realisations, with the CR
gradient's amplitude profiled: what the gradient estimators differentiate.

The observed spectrum is modelled as C_ℓ^obs = a C_ℓ^sky(θ) + N + ε_ℓ with a = (|∇n/n| r_L)², N
the shot noise and ε_ℓ the measurement error σ_ℓ; C_ℓ^sky scatters about the ensemble mean ⟨C_ℓ⟩(θ)
by the cosmic variance S (the ℓ-ℓ' covariance of per-realisation spectra):

    χ² = rᵀ Σ⁻¹ r,   r = C^obs − N − a⟨C⟩,   Σ = a² S (1/R_sky + 1/N_B) + diag(σ_ℓ²),

the 1/N_B term the model's own sampling error; Σ is held fixed when differentiating. The supported
fits use :mod:`jaxcr.inference.likelihood` (with ln det Σ) instead.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ...observations import ObservedSpectrum

__all__ = ["chi2_profiled", "gls_chi2", "AMPLITUDE_ITERATIONS"]

AMPLITUDE_ITERATIONS = 8  # fixed-point iterations of the profiled amplitude (reach ~1e-12)


def chi2_profiled(mean_cl, cov_cl, observed: ObservedSpectrum, n_model: int, amplitude=None):
    """χ² = rᵀΣ⁻¹r of C^model = a⟨C_ℓ⟩ + N against the observed ℓ (≤ model lmax); a profiled if None.

    ``mean_cl`` (L,) and ``cov_cl`` (L, L) are the mean and the per-realisation covariance of
    ``n_model`` model realisations. Returns (χ², a); a non-finite χ² raises, also under ``jit``.
    """
    ell = np.asarray(observed.ell)
    sel = ell < mean_cl.shape[-1]
    if not sel.any():
        raise ValueError(
            f"no multipole of the spectrum (ℓ = {ell.min()}..{ell.max()}) lies within the model's "
            f"ℓ ≤ {mean_cl.shape[-1] - 1}: raise the model's nside (lmax = 2·nside − 1)"
        )
    ell = ell[sel]
    sky = cov_cl[np.ix_(ell, ell)] * (1.0 / observed.sky_realisations + 1.0 / n_model)
    sky = jax.lax.stop_gradient(sky)
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
    """χ² and amplitude of o ≈ a m with Σ = a² sky + meas (``sky`` None: Σ = meas). The profiled
    amplitude a = mᵀΣ⁻¹o / mᵀΣ⁻¹m is iterated to its fixed point (Σ depends on a)."""

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
