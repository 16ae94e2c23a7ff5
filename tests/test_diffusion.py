"""Diffusion (Einstein, Green-Kubo) and relative-diffusion tensors: exact cases and a real run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcr import pixel_directions
from jaxcr.diffusion import diffusion_tensor, green_kubo_diffusion_tensor, relative_diffusion_tensor


def test_einstein_and_relative_tensors_on_synthetic_positions():
    # r with known covariance 2T K: the Einstein estimate recovers K within its standard error;
    # a per-realisation common shift changes K but not K̃s (which is Cov_pixels/2T exactly).
    T, K = 10.0, jnp.diag(jnp.array([1.0, 2.0, 5.0]))
    r = jax.random.normal(jax.random.key(0), (6, 5000, 3)) * jnp.sqrt(2 * T * jnp.diag(K))
    k_est, k_sem = diffusion_tensor(r, T)
    assert np.all(np.abs(np.diag(k_est - K)) < 4 * np.diag(k_sem))
    shifted = r + jnp.array([30.0, 0.0, 0.0]) * jnp.arange(6)[:, None, None]
    ks, _ = relative_diffusion_tensor(shifted, T)
    ref = np.mean([np.cov(np.asarray(x).T, bias=True) for x in r], axis=0) / (2 * T)
    np.testing.assert_allclose(ks, ref, rtol=1e-12)


def test_green_kubo_estimator_recovers_k_from_linear_response():
    # r(−T) = 3 K n̂ gives −⟨r_i p̂_j(0)⟩ = 3 K ⟨n̂ n̂ᵀ⟩ = K, since the HEALPix pixel directions
    # have ⟨n̂ n̂ᵀ⟩ = I/3 to ~1e-3 at nside 8; tolerance 1e-2 relative.
    K = jnp.array([[2.0, 0.4, 0.0], [0.4, 1.0, 0.2], [0.0, 0.2, 6.0]])
    n = pixel_directions(8)
    gk, _ = green_kubo_diffusion_tensor((3 * n @ K.T)[None], n)
    np.testing.assert_allclose(gk, K, rtol=1e-2, atol=1e-2)


def test_einstein_and_green_kubo_agree_at_late_times(small_run):
    # ΩT = 10³ ≫ the velocity correlation time: the two estimators of the diagonal agree within
    # 3 combined standard errors (over the 8 realisations).
    _, ds = small_run
    a = np.diagonal(ds.diffusion_tensor.values[-1])
    b = np.diagonal(ds.diffusion_tensor_green_kubo.values[-1])
    sa = np.diagonal(ds.diffusion_tensor_sem.values[-1])
    sb = np.diagonal(ds.diffusion_tensor_green_kubo_sem.values[-1])
    assert np.all(np.abs(a - b) < 3 * np.hypot(sa, sb)), (a, b, sa, sb)
    assert a[2] > 5 * a[0]  # parallel diffusion dominates (σ² = 1, B0 = ẑ): a non-trivial K


def test_relative_diffusion_vanishes_early_and_approaches_k_late(small_run):
    # T → 0: r ≈ T n̂, so K̃s = T Cov(n̂)/2 = T I/6 (HEALPix ⟨n̂n̂ᵀ⟩ = I/3 to 0.2 %): tolerance 1 %.
    _, ds = small_run
    np.testing.assert_allclose(ds.relative_diffusion_tensor.values[0] / 0.01, np.eye(3) / 6, rtol=0.01, atol=1e-4)
    # T ≫ 1: pairs decorrelate and K̃s → K (within 3 combined standard errors on the diagonal).
    ks, k = np.diagonal(ds.relative_diffusion_tensor.values[-1]), np.diagonal(ds.diffusion_tensor.values[-1])
    err = np.hypot(
        np.diagonal(ds.relative_diffusion_tensor_sem.values[-1]), np.diagonal(ds.diffusion_tensor_sem.values[-1])
    )
    assert np.all(np.abs(ks - k) < 3 * err)
    assert np.all(ks <= k + 1e-12)  # K − K̃s = |⟨r⟩_pixels|²/2T ≥ 0


def test_standard_diffusion_dipole_approaches_eq6(small_run):
    # C_1 of the realisation-averaged map minus its residual noise (N/N_B) against Eq. 6 with
    # the Green-Kubo K at ΩT = 10³ (gradient ∥ B0). Tolerance: 3 standard errors propagated from
    # the K estimate (C_1 ∝ K², so σ_C1 = 2 C_1 σ_K/K).
    _, ds = small_run
    c1 = float(ds.cl_standard_diffusion.sel(gradient="parallel").values[-1, 1])
    noise = float(ds.noise_level.sel(gradient="parallel").values[-1]) / ds.sizes["realisation"]
    eq6 = float(ds.standard_diffusion_dipole_eq6_green_kubo.sel(gradient="parallel").values[-1])
    kzz, skzz = (
        float(ds.diffusion_tensor_green_kubo.values[-1, 2, 2]),
        float(ds.diffusion_tensor_green_kubo_sem.values[-1, 2, 2]),
    )
    assert abs(c1 - noise - eq6) < 3 * 2 * eq6 * skzz / kzz, (c1, noise, eq6)


@pytest.mark.parametrize("fn", [diffusion_tensor, relative_diffusion_tensor])
def test_bad_positions_shape_raises(fn):
    with pytest.raises(ValueError, match="positions"):
        fn(jnp.zeros((2, 3, 4)), 1.0)
