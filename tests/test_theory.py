"""Closed forms (Eq. 4, 6, 8, 12) against hand values and independent simulations of their meaning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcr import angular_power_spectrum, pixel_directions, theory


def test_eq4_asymptotic_ratio_values():
    # Values of Eq. 4 computed by hand (rounded to 3-4 digits).
    np.testing.assert_allclose(
        theory.asymptotic_ratio([1, 2, 3, 4, 10]), [1.0, 0.3, 0.12857, 0.066667, 0.0064935], rtol=1e-4
    )


def test_eq6_standard_dipole_equals_power_of_the_fick_dipole_map():
    # The Fick dipole map δI = 3 n̂·K·g has C_1 = 4π|3Kg|²/9 = 4π|Kg|²; check with the SHT.
    K = jnp.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 6.0]])
    g = jnp.array([0.2, -0.1, 0.4])
    cl = angular_power_spectrum(3 * pixel_directions(16) @ (K @ g))
    assert float(cl[1]) == pytest.approx(float(theory.standard_diffusion_dipole(K, g)), rel=1e-5)


def test_eq12_noise_level_is_the_power_of_independent_random_walks():
    # Pixels with independent Gaussian r, ⟨r rᵀ⟩ = 2T K: δI = r·g is white noise with variance
    # 2T gKg, so ⟨C_ℓ⟩ = 4π var/N_pix = Eq. 12. 40 maps × 16 multipoles (ℓ = 2..17): the mean
    # has a relative standard error ≈ sqrt(2/(40·Σ(2ℓ+1)))... < 1 %; tolerance 4 %.
    T, K, g = 50.0, jnp.diag(jnp.array([0.5, 0.5, 4.0])), jnp.array([0.3, 0.0, 1.0])
    npix = 12 * 16**2
    r = jax.random.normal(jax.random.key(0), (40, npix, 3)) * jnp.sqrt(2 * T * jnp.diag(K))
    cl = angular_power_spectrum(r @ g, lmax=17)
    assert float(cl[:, 2:].mean()) == pytest.approx(float(theory.noise_level(K, g, T, npix)), rel=0.04)


def test_eq8_rhs_and_multipole_sum():
    Ks = jnp.array([[1.0, 0.5, 0.0], [0.5, 2.0, 0.0], [0.0, 0.0, 3.0]])
    g = jnp.array([1.0, 1.0, 0.0])
    assert float(theory.sum_rule_rhs(Ks, g, 2.0)) == pytest.approx(2 * 2.0 * (1 + 2 + 2 * 0.5))
    cl = jnp.array([5.0, 1.0, 2.0])
    assert float(theory.multipole_sum(cl)) == pytest.approx((5 + 3 + 10) / (4 * np.pi))
    assert float(theory.multipole_sum(cl, ell_min=1)) == pytest.approx(13 / (4 * np.pi))
