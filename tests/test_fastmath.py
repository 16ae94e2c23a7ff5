"""The fast cosine of the field kernel against jnp.cos (and its derivative against -sin)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxcr._fastmath import fast_cos, reduce_phase


def test_fast_cos_matches_jnp_cos_for_small_and_huge_phases():
    # Small phases: polynomial truncation (< 6e-13) dominates; tolerance 1e-12.
    x = jnp.linspace(-20.0, 20.0, 200001)
    assert float(jnp.abs(fast_cos(x) - jnp.cos(x)).max()) < 1e-12
    # Phases up to 1e6 rad (long backtracking): bounded by the phase's own float64 rounding
    # (ulp(1e6) = 1.2e-10); tolerance 1.2e-10.
    x = jax.random.uniform(jax.random.key(0), (200000,), minval=-1e6, maxval=1e6)
    assert float(jnp.abs(fast_cos(x) - jnp.cos(x)).max()) < 1.2e-10


def test_phase_reduction_lands_in_minus_pi_pi():
    x = jax.random.uniform(jax.random.key(1), (10000,), minval=-1e5, maxval=1e5)
    y = reduce_phase(x)
    assert float(jnp.abs(y).max()) <= np.pi + 1e-12
    np.testing.assert_allclose(jnp.cos(y), jnp.cos(x), atol=1e-10)


def test_fast_cos_derivative_is_minus_sin():
    x = jnp.linspace(-50.0, 50.0, 10001)
    g = jax.vmap(jax.grad(fast_cos))(x)
    np.testing.assert_allclose(g, -jnp.sin(x), atol=1e-13)
    # and the second derivative (used by jacfwd of the field's JVP) is -cos
    g2 = jax.vmap(jax.grad(jax.grad(fast_cos)))(x[:100])
    np.testing.assert_allclose(g2, -jnp.cos(x[:100]), atol=1e-12)
