"""Closed forms of the paper in one place (internal units: lengths r_L, times 1/Ω, c = 1).

* Eq. 4  — Ahlers' asymptotic ratio  lim ⟨C_ℓ⟩/⟨C_1⟩ = 18 / ((2ℓ+1)(ℓ+2)(ℓ+1)).
* Eq. 6  — standard-diffusion dipole  C_1 = 4π |K g|².
* Eq. 8  — right side of the sum rule  2T gᵀ K̃s g.
* Eq. 12 — shot-noise level  N = (4π/N_pix) · 2T gᵀ K g.
* A dipole map δ·n̂ has C_1 = 4π|δ|²/9 and no other power.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = [
    "asymptotic_ratio",
    "standard_diffusion_dipole",
    "sum_rule_rhs",
    "noise_level",
    "dipole_power",
    "multipole_sum",
]


def asymptotic_ratio(ell):
    """Eq. 4: 18/((2ℓ+1)(ℓ+2)(ℓ+1)); equals 1 at ℓ = 1 (ℓ=2: 0.300, 3: 0.1286, 10: 0.00649)."""
    ell = jnp.asarray(ell, dtype=float)
    return 18.0 / ((2 * ell + 1) * (ell + 2) * (ell + 1))


def standard_diffusion_dipole(diffusion_tensor, gradient):
    """Eq. 6: C_1 = 4π |K g|² of the standard (Fick) dipole δ = 3 K g (C_1/4π = |Kg|²)."""
    kg = jnp.asarray(diffusion_tensor) @ jnp.asarray(gradient)
    return 4 * jnp.pi * jnp.sum(kg**2, axis=-1)


def sum_rule_rhs(relative_diffusion_tensor, gradient, time):
    """Eq. 8 right side: 2T gᵀ K̃s g."""
    g = jnp.asarray(gradient)
    return 2 * jnp.asarray(time) * jnp.einsum("...ij,i,j->...", jnp.asarray(relative_diffusion_tensor), g, g)


def noise_level(diffusion_tensor, gradient, time, npix):
    """Eq. 12: N = (4π/N_pix) · 2T gᵀ K g, the C_ℓ of uncorrelated pixels at late times."""
    g = jnp.asarray(gradient)
    return 4 * jnp.pi / npix * 2 * jnp.asarray(time) * jnp.einsum("...ij,i,j->...", jnp.asarray(diffusion_tensor), g, g)


def dipole_power(dipole):
    """C_1 of the map δ·n̂: 4π|δ|²/9."""
    return 4 * jnp.pi * jnp.sum(jnp.asarray(dipole) ** 2, axis=-1) / 9


def multipole_sum(cl, ell_min: int = 0):
    """(1/4π) Σ_{ℓ ≥ ell_min} (2ℓ+1) C_ℓ over the last axis (Eq. 2, 3, 8 left sides)."""
    cl = jnp.asarray(cl)
    ell = jnp.arange(cl.shape[-1])
    w = jnp.where(ell >= ell_min, 2 * ell + 1, 0)
    return jnp.sum(w * cl, axis=-1) / (4 * jnp.pi)
