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


def test_float32_cos_after_float64_reduction_is_accurate_for_huge_phases():
    # The phase is reduced in float64 and only y ∈ [-π, π] is rounded to float32 (ulp(π)/2 =
    # 1.2e-7), so the error stays at float32 rounding for any phase up to 1e6 rad; tolerance
    # 4e-7 (measured 2.5e-7). Rounding the phase itself to float32 would be wrong by ~1e-1.
    from jaxcr._fastmath import fast_cos_float32

    x = jax.random.uniform(jax.random.key(2), (200000,), minval=-1e6, maxval=1e6)
    c = fast_cos_float32(x)
    assert c.dtype == jnp.float32
    assert float(jnp.abs(c.astype(float) - jnp.cos(x)).max()) < 4e-7
    assert float(jnp.abs(jnp.cos(x.astype(jnp.float32)).astype(float) - jnp.cos(x)).max()) > 1e-2
    g = jax.vmap(jax.grad(lambda t: fast_cos_float32(t).astype(float)))(x[:1000])
    np.testing.assert_allclose(g, -jnp.sin(x[:1000]), atol=1e-6)
