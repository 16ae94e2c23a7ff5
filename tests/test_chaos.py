"""Maximal Lyapunov exponent: tangent-vector (jvp) method against two-trajectory growth."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxcr
from jaxcr.chaos import lyapunov_exponent

FIELD = jaxcr.PlaneWaveTurbulence.sample(0, jaxcr.TurbulenceParameters(lambda_min=1.0, lambda_max=100.0, n_modes=32))
N = jaxcr.pixel_directions(2)  # 48 orbits


def test_lyapunov_exponent_matches_two_trajectory_separation_growth():
    # Independent estimate: ln(|δ(T)|/|δ(0)|)/T from two backtracked orbits 1e-8 apart (a
    # finite-difference linearisation, no jvp), averaged over the same 48 orbits at ΩT = 60.
    # Both are finite-time exponents of the same orbits; the random initial tangent vs a fixed
    # direction perturbation differ by O(1/(λT)) ≈ 10 %: tolerance 15 %.
    T = 60.0
    est = lyapunov_exponent(FIELD, N, T, dt=0.05)
    pert = N + 1e-8 * jnp.array([0.0, 1.0, 0.0])
    pert = pert / jnp.linalg.norm(pert, axis=-1, keepdims=True)
    a, b = (
        jaxcr.backtrack(FIELD, N, [T], solver=jaxcr.Boris(dt=0.05)),
        jaxcr.backtrack(FIELD, pert, [T], solver=jaxcr.Boris(dt=0.05)),
    )
    sep = jnp.sqrt(jnp.sum((a.positions - b.positions) ** 2, -1) + jnp.sum((a.momenta - b.momenta) ** 2, -1))[-1]
    fd = float(np.mean(np.log(sep / jnp.linalg.norm(pert - N, axis=-1))) / T)
    assert float(est.exponent) == pytest.approx(fd, rel=0.15)
    assert float(est.exponent) > 0.05  # σ² = 1 turbulence is chaotic
    assert est.pathwise_horizon == pytest.approx(np.log(1e6) / float(est.exponent))


def test_uniform_field_has_no_exponential_growth():
    # A helix: tangent vectors grow at most linearly (phase shear), so λ(T) ≤ ln(cT)/T → 0.
    uniform = jaxcr.PlaneWaveTurbulence.sample(0, jaxcr.TurbulenceParameters(sigma2=0.0, n_modes=1))
    est = lyapunov_exponent(uniform, N, 400.0, dt=0.05)
    assert float(est.exponent) < np.log(400.0) / 400.0


def test_lyapunov_bad_input():
    with pytest.raises(ValueError, match="total_time"):
        lyapunov_exponent(FIELD, N, -1.0)
    with pytest.raises(ValueError, match="directions"):
        lyapunov_exponent(FIELD, jnp.ones((2, 3)), 10.0)
