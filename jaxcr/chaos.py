"""Chaos diagnostic: the maximal Lyapunov exponent of cosmic-ray orbits in a field.

Trajectories in σ² ≈ 1 turbulence are chaotic: tangent vectors grow like e^{λt}. Pathwise
(backprop) derivatives of anything computed at backtracking time T then scale like e^{λT}, so
they are informative only while λT ≲ a few. This module measures λ by tangent-vector
renormalisation (Benettin et al. 1980): the Boris map and its exact linearisation (``jax.jvp``)
are iterated together, the 6-D tangent vector (δr, δu) is renormalised every ``renormalise_every``
(1/Ω) and λ = Σ ln|δ| / T. Units: 1/Ω (internal).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from . import _checks
from .dynamics import boris_step
from .field import AbstractField, check_field

__all__ = ["LyapunovEstimate", "lyapunov_exponent"]


class LyapunovEstimate(eqx.Module):
    """λ (mean over particles and realisations), its standard error, and the per-orbit values."""

    exponent: Float[Array, ""]
    stderr: Float[Array, ""]
    per_orbit: Float[Array, "..."]
    total_time: float = eqx.field(static=True)

    @property
    def pathwise_horizon(self) -> float:
        """ΩT at which e^{λT} = 10⁶: beyond it pathwise gradients are dominated by chaos."""
        lam = float(self.exponent)
        return float("inf") if lam <= 0 else float(np.log(1e6) / lam)


@eqx.filter_jit
def _exponents(field, directions, v0, dt, n_intervals: int, steps_per_interval: int, charge_sign):
    def orbit(f, n, v):
        y = (jnp.zeros(3), n)
        tangent = (v[:3], v[3:])

        def interval(carry, _):
            y, tangent = carry

            def one(_, yt):
                return jax.jvp(lambda z: boris_step(f, charge_sign, z, dt), (yt[0],), (yt[1],))

            y, tangent = jax.lax.fori_loop(0, steps_per_interval, one, (y, tangent))
            norm = jnp.sqrt(jnp.sum(tangent[0] ** 2) + jnp.sum(tangent[1] ** 2))
            return (y, (tangent[0] / norm, tangent[1] / norm)), jnp.log(norm)

        _, logs = jax.lax.scan(interval, (y, tangent), None, length=n_intervals)
        return jnp.sum(logs)

    per_particle = jax.vmap(orbit, in_axes=(None, 0, 0))
    if field.is_ensemble:
        return jax.vmap(per_particle, in_axes=(0, None, None))(field, directions, v0)
    return per_particle(field, directions, v0)


def lyapunov_exponent(
    field: AbstractField,
    directions: Float[ArrayLike, "P 3"],
    total_time: float,
    *,
    dt: float = 0.02,
    renormalise_every: float = 1.0,
    charge_sign: float = 1.0,
    seed: int = 0,
) -> LyapunovEstimate:
    """Maximal Lyapunov exponent λ (units Ω) of backtracked orbits launched along ``directions``.

    Args:
        field: a field or a stack of realisations.
        directions: launch directions n̂ (unit, shape (P, 3)); the orbits are the backtracking
            orbits of :func:`jaxcr.backtrack` (antiparticle along +n̂).
        total_time: ΩT over which growth is averaged (≫ 1/λ for convergence).
        dt: Boris step; ``renormalise_every``: renormalisation interval (both 1/Ω).
        seed: seed of the random initial tangent vectors.
    Returns:
        :class:`LyapunovEstimate` with the mean over orbits and its standard error.
    """
    check_field(field)
    _checks.check_unit_vectors("directions", directions)
    if np.ndim(directions) != 2:
        raise ValueError(f"directions must have shape (P, 3); got {np.shape(directions)}")
    _checks.check_positive("total_time", total_time)
    _checks.check_positive("dt", dt)
    _checks.check_positive("renormalise_every", renormalise_every)
    steps = max(1, int(round(renormalise_every / dt)))
    n_intervals = max(1, int(round(total_time / (steps * dt))))
    v0 = jax.random.normal(jax.random.key(seed), (np.shape(directions)[0], 6))
    v0 = v0 / jnp.linalg.norm(v0, axis=-1, keepdims=True)
    logs = _exponents(
        field,
        jnp.asarray(directions, dtype=float),
        v0,
        jnp.asarray(float(dt)),
        n_intervals,
        steps,
        jnp.asarray(-float(charge_sign)),
    )
    T = n_intervals * steps * dt
    lam = np.asarray(logs).ravel() / T
    if not np.all(np.isfinite(lam)):
        raise FloatingPointError(
            "non-finite Lyapunov exponent: the tangent vector overflowed; reduce renormalise_every"
        )
    return LyapunovEstimate(
        exponent=jnp.asarray(lam.mean()),
        stderr=jnp.asarray(lam.std(ddof=1) / np.sqrt(lam.size)),
        per_orbit=jnp.asarray(np.asarray(logs) / T),
        total_time=float(T),
    )
