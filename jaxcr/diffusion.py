"""Diffusion and relative-diffusion tensors from backtracked ensembles (Sec. 3; Eq. 8, 9).

Inputs are the backtracked positions r(−T) (and momenta) at one time T, with shape
(R, P, 3): R field realisations × P pixels (particles). All start at r(0) = 0, so Δr = r(−T).

* K_ij(T)   = ⟨Δr_i Δr_j⟩ / (2T) over all particles and realisations (Einstein).
* K_ij^GK(T) = −⟨r_i(−T) p̂_j(0)⟩ (Green-Kubo cross estimate; p̂(0) = −n̂), symmetrised.
* K̃s_ij(T) = ⟨(r_a − r_b)_i (r_a − r_b)_j⟩_pairs / (4T) = Cov_pixels(r)_ij / (2T)       (Eq. 9)
  with the population covariance over the P pixels (all ordered pairs, a = b included, as in
  the integral of Eq. 9), averaged over realisations.

Each estimator also returns its standard error from the spread over realisations.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from . import _checks

__all__ = ["diffusion_tensor", "green_kubo_diffusion_tensor", "relative_diffusion_tensor", "mean_and_sem"]


def _per_realisation(positions):
    r = jnp.asarray(positions)
    if r.ndim == 2:
        r = r[None]
    if r.ndim != 3 or r.shape[-1] != 3:
        raise ValueError(f"positions must have shape (R, P, 3) or (P, 3); got {jnp.shape(positions)}")
    return r


def _check_time(time) -> None:
    _checks.check_scalar("time", time)
    _checks.check_positive("time (the backtracking time ΩT)", time)


def mean_and_sem(per_real):
    """Mean over the leading (realisation) axis and its standard error (NaN for one realisation)."""
    n = per_real.shape[0]
    mean = per_real.mean(0)
    sem = per_real.std(0, ddof=1) / jnp.sqrt(n) if n > 1 else jnp.full_like(mean, jnp.nan)
    return mean, sem


def diffusion_tensor(positions: Float[ArrayLike, "R P 3"], time) -> tuple[Float[Array, "3 3"], Float[Array, "3 3"]]:
    """K(T) = ⟨Δr Δr⟩/(2T) and its standard error over realisations (units r_L·c)."""
    _check_time(time)
    r = _per_realisation(positions)
    per = jnp.einsum("rpi,rpj->rij", r, r) / r.shape[1] / (2 * time)
    return mean_and_sem(per)


def green_kubo_diffusion_tensor(positions: Float[ArrayLike, "R P 3"], directions: Float[ArrayLike, "P 3"], time=None):
    """K^GK = −⟨r_i(−T) p̂_j(0)⟩ (symmetric part) with p̂(0) = −n̂; ``directions`` are the n̂.

    Follows from r(−T) = −∫_{−T}^0 p̂ dt and K = ∫_0^∞ ⟨p̂(0) p̂(t)⟩ dt; valid for T ≫ the
    velocity correlation time and isotropic initial directions (HEALPix pixels are).
    """
    del time
    r = _per_realisation(positions)
    p0 = -jnp.asarray(directions)
    per = -jnp.einsum("rpi,pj->rij", r, p0) / r.shape[1]
    per = 0.5 * (per + jnp.swapaxes(per, -1, -2))
    return mean_and_sem(per)


def relative_diffusion_tensor(positions: Float[ArrayLike, "R P 3"], time):
    """K̃s(T) = Cov_pixels(r)/(2T) (Eq. 9), averaged over realisations, with standard error."""
    _check_time(time)
    r = _per_realisation(positions)
    d = r - r.mean(1, keepdims=True)
    per = jnp.einsum("rpi,rpj->rij", d, d) / r.shape[1] / (2 * time)
    return mean_and_sem(per)
