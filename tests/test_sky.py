"""Pixel directions, δI maps (Eq. 5, 7), Liouville maps and masks."""

import healpy as hp
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcr import sky


def test_pixel_directions_are_healpy_ring_centres():
    n = np.asarray(sky.pixel_directions(8))
    np.testing.assert_allclose(n, np.stack(hp.pix2vec(8, np.arange(768)), -1), atol=0)
    np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-15)


@pytest.mark.parametrize("nside", [0, 3, 12, -4, 2.0, True])
def test_nside_not_power_of_two_raises(nside):
    with pytest.raises(ValueError, match="nside"):
        sky.pixel_directions(nside)


def test_relative_intensity_is_eq5_by_hand():
    r = jnp.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    p = jnp.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    g = jnp.array([0.1, 0.0, 0.2])
    K = jnp.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 5.0]])
    # pixel 0: r·g = 0.1 + 0.6 = 0.7; p̂·K·g = (0,0,1)·(0.1, 0, 1.0) = 1.0 → 0.7 − 3 = −2.3
    # pixel 1: r·g = −0.1;            p̂·K·g = 0.1                   → −0.1 − 0.3 = −0.4
    np.testing.assert_allclose(sky.relative_intensity(r, p, g, K), [-2.3, -0.4], atol=1e-15)
    np.testing.assert_allclose(sky.relative_intensity(r, None, g), [0.7, -0.1], atol=1e-15)  # Eq. 7 r-term


def test_relative_intensity_rejects_bad_shapes():
    r = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match="gradient"):
        sky.relative_intensity(r, r, jnp.ones(2))
    with pytest.raises(ValueError, match="diffusion_tensor"):
        sky.relative_intensity(r, r, jnp.ones(3), jnp.eye(2))
    with pytest.raises(ValueError, match="gradient"):
        sky.relative_intensity(r, r, jnp.array([0.0, jnp.nan, 1.0]))


def test_liouville_map_default_dipole_and_custom_function():
    p = jnp.array([[0.0, 0.0, 1.0], [0.6, 0.8, 0.0]])
    np.testing.assert_allclose(sky.liouville_map(p), [1.0, 0.0])
    np.testing.assert_allclose(sky.liouville_map(p, lambda q: q[..., 0] ** 2), [0.0, 0.36])


def test_declination_band_mask_sky_fraction():
    # f_sky of a band = (sin δ_max − sin δ_min)/2; pixelisation error at nside 64 is < 1 %.
    m = np.asarray(sky.declination_band_mask(64, -30.0, 64.0))
    expected = (np.sin(np.radians(64)) - np.sin(np.radians(-30))) / 2
    assert m.mean() == pytest.approx(expected, rel=0.01)
    with pytest.raises(ValueError, match="dec_min"):
        sky.declination_band_mask(8, 10.0, -10.0)


def test_check_mask_rejects_wrong_length_and_values():
    with pytest.raises(ValueError, match="shape"):
        sky.check_mask(np.ones(10), 768)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sky.check_mask(np.full(768, 2.0), 768)
    with pytest.raises(ValueError, match="zero everywhere"):
        sky.check_mask(np.zeros(768), 768)
