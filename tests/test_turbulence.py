"""PlaneWaveTurbulence against Eq. 10-11, ∇·B = 0, the σ² normalisation and input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcr import PlaneWaveTurbulence, TurbulenceNoise, TurbulenceParameters, mode_amplitudes, mode_wavenumbers
from jaxcr.turbulence import polarisation_basis

PARAMS = TurbulenceParameters.paper(n_modes=64)


def test_divergence_free_at_random_points():
    # ∇·B = -Σ (k_n·E_n) sin(...); k_n·E_n = 0 analytically, so only rounding (~1e-16 |k||E|)
    # remains. Tolerance 1e-10 relative to |∇B| (Frobenius norm of the Jacobian).
    field = PlaneWaveTurbulence.sample(1, PARAMS)
    pts = jax.random.uniform(jax.random.key(2), (20, 3), minval=-500, maxval=500)
    jac = jax.vmap(jax.jacfwd(field))(pts)
    div = jnp.trace(jac, axis1=1, axis2=2)
    rel = jnp.abs(div) / jnp.linalg.norm(jac, axis=(1, 2))
    assert float(rel.max()) <= 1e-10


def test_mode_wavenumbers_are_log_spaced_between_kmin_and_kmax():
    k = np.asarray(mode_wavenumbers(PARAMS))
    k_min, k_max = 2 * np.pi / 1000.0, 2 * np.pi / 0.1
    delta = np.log(k_max / k_min) / 64
    np.testing.assert_allclose(k, k_min * np.exp(np.arange(64) * delta), rtol=1e-13)
    np.testing.assert_allclose(k[-1] * np.exp(delta), k_max, rtol=1e-13)


def test_amplitudes_follow_spectral_weight_G_and_normalise_to_sigma2():
    # Independent NumPy evaluation of Eq. 11.
    p = TurbulenceParameters.paper(n_modes=32, sigma2=0.7)
    k = np.asarray(mode_wavenumbers(p))
    delta = np.log(k[1] / k[0])
    g = 4 * np.pi * k**2 * k * delta / (1 + (k * 10.0) ** (11 / 3))
    a2 = np.asarray(mode_amplitudes(p)) ** 2
    np.testing.assert_allclose(a2, 2 * 0.7 * g / g.sum(), rtol=1e-12)
    # <|δB|²> = Σ A_n²/2 = σ² exactly (cos² averages to 1/2; |a cos α + b sin α| = 1)
    assert a2.sum() / 2 == pytest.approx(0.7, rel=1e-13)


def test_polarisation_vectors_are_unit_and_perpendicular_to_k():
    noise = TurbulenceNoise.sample(jax.random.key(3), 500)
    a, b = polarisation_basis(noise.directions)
    k = noise.directions
    for v in (a, b):
        np.testing.assert_allclose(jnp.linalg.norm(v, axis=-1), 1.0, atol=1e-14)
        assert float(jnp.abs(jnp.sum(v * k, axis=-1)).max()) < 1e-14
    assert float(jnp.abs(jnp.sum(a * b, axis=-1)).max()) < 1e-14
    field = PlaneWaveTurbulence.from_parameters(PARAMS, TurbulenceNoise.sample(jax.random.key(4), 64))
    amp = mode_amplitudes(PARAMS)
    np.testing.assert_allclose(jnp.linalg.norm(field.polarisations, axis=-1), amp, rtol=1e-13)
    kk = field.wavevectors
    cosang = jnp.sum(kk * field.polarisations, axis=-1) / (jnp.linalg.norm(kk, axis=-1) * amp)
    assert float(jnp.abs(cosang).max()) < 1e-13


def test_wave_directions_are_isotropic():
    # k̂ uniform on the sphere: <k̂> = 0 and <k̂ k̂ᵀ> = I/3. With 20000 draws the standard error
    # of each component is ≤ sqrt(1/3/20000) ≈ 0.004; tolerance 5 standard errors = 0.02.
    d = np.asarray(TurbulenceNoise.sample(jax.random.key(5), 20000).directions)
    np.testing.assert_allclose(d.mean(0), 0.0, atol=0.02)
    np.testing.assert_allclose(d.T @ d / len(d), np.eye(3) / 3, atol=0.02)


def test_spatial_and_ensemble_mean_of_dB2_equals_sigma2():
    # 40 realisations × 400 random points in a box much larger than λ_max. The statistical
    # tolerance is 4 standard errors of the mean estimated from the per-realisation means.
    p = TurbulenceParameters(sigma2=1.3, coherence_length=10.0, lambda_min=1.0, lambda_max=100.0, n_modes=64)
    fields = PlaneWaveTurbulence.sample_ensemble(7, p, 40)
    pts = jax.random.uniform(jax.random.key(8), (400, 3), minval=-1e4, maxval=1e4)
    db2 = jax.vmap(lambda f: jnp.mean(jnp.sum(f.turbulent(pts) ** 2, -1)))(fields)
    mean, se = float(db2.mean()), float(db2.std(ddof=1) / np.sqrt(len(db2)))
    assert abs(mean - 1.3) < 4 * se, (mean, se)
    assert se < 0.05  # the check has power: a 10 % normalisation error would be caught


def test_field_evaluation_matches_direct_sum_and_from_modes():
    rng = np.random.default_rng(0)
    k = rng.normal(size=(5, 3))
    e = np.cross(k, rng.normal(size=(5, 3)))
    beta = rng.uniform(0, 2 * np.pi, 5)
    b0 = np.array([0.0, 0.6, 0.8])
    field = PlaneWaveTurbulence.from_modes(k, e, beta, b0)
    r = rng.normal(size=(7, 3)) * 10
    direct = b0 + np.array([sum(e[n] * np.cos(k[n] @ ri + beta[n]) for n in range(5)) for ri in r])
    np.testing.assert_allclose(field(jnp.asarray(r)), direct, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(field(jnp.asarray(r[0])), direct[0], rtol=1e-12, atol=1e-12)


def test_same_seed_same_field_other_realisation_other_field():
    f1 = PlaneWaveTurbulence.sample(11, PARAMS, realisation=3)
    f2 = PlaneWaveTurbulence.sample(11, PARAMS, realisation=3)
    f3 = PlaneWaveTurbulence.sample(11, PARAMS, realisation=4)
    np.testing.assert_array_equal(f1.wavevectors, f2.wavevectors)
    np.testing.assert_array_equal(f1.polarisations, f2.polarisations)
    assert not np.allclose(f1.wavevectors, f3.wavevectors)
    stack = PlaneWaveTurbulence.sample_ensemble(11, PARAMS, 3, first=2)
    np.testing.assert_array_equal(stack.realisation(1).phases, f1.phases)
    assert stack.n_realisations == 3 and stack.is_ensemble


def test_field_gradient_wrt_parameters_matches_finite_differences():
    # Fixed noise, b(r) at one point as a function of (σ², λ_c, r_L). Central differences with
    # relative step 1e-6 are accurate to ~1e-8 relative here; tolerance 1e-6.
    noise = TurbulenceNoise.sample(jax.random.key(9), 32)
    r = jnp.array([3.0, -2.0, 5.0])

    def bx(theta):
        s2, lc, rl = theta
        p = TurbulenceParameters(
            sigma2=s2, coherence_length=lc, lambda_min=0.1, lambda_max=1000.0, n_modes=32, larmor_radius=rl
        )
        return PlaneWaveTurbulence.from_parameters(p, noise)(r)[0]

    theta = jnp.array([0.8, 12.0, 1.3])
    g = jax.grad(bx)(theta)
    for i in range(3):
        h = 1e-6 * theta[i]
        e = jnp.zeros(3).at[i].set(h)
        fd = (bx(theta + e) - bx(theta - e)) / (2 * h)
        assert float(g[i]) == pytest.approx(float(fd), rel=1e-6, abs=1e-10)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(sigma2=-0.1), "sigma2"),
        (dict(lambda_min=2000.0), "lambda_min"),
        (dict(lambda_min=1000.0), "lambda_min"),
        (dict(n_modes=0), "n_modes"),
        (dict(n_modes=2.5), "n_modes"),
        (dict(coherence_length=float("nan")), "coherence_length"),
        (dict(sigma2=float("inf")), "sigma2"),
        (dict(larmor_radius=0.0), "larmor_radius"),
    ],
)
def test_bad_parameters_raise_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TurbulenceParameters.paper(**kwargs) if "n_modes" not in kwargs else TurbulenceParameters(**kwargs)


def test_bad_mode_arrays_raise():
    k = np.ones((4, 3))
    with pytest.raises(ValueError, match="polarisations"):
        PlaneWaveTurbulence.from_modes(k, np.ones((3, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="phases"):
        PlaneWaveTurbulence.from_modes(k, np.ones((4, 3)), np.zeros(5))
    with pytest.raises(ValueError, match="wavevectors"):
        PlaneWaveTurbulence.from_modes(np.ones((4, 2)), np.ones((4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="phases"):
        PlaneWaveTurbulence.from_modes(k, np.ones((4, 3)), np.array([0, 1, np.nan, 0]))
    with pytest.raises(ValueError, match="b0_direction"):
        PlaneWaveTurbulence.sample(0, PARAMS, b0_direction=(1.0, 1.0, 0.0))


def test_float32_field_evaluation_agrees_with_float64():
    # precision="float32": phases formed and reduced in float64, cos and the 256-mode sum in
    # float32. Against the float64 field at positions up to 10⁴ r_L (phases up to ~10⁶ rad):
    # max error below 1e-5 of the rms turbulent field (float32 rounding of 256 terms: ~1e-6).
    import jaxcr

    field = jaxcr.PlaneWaveTurbulence.sample(3, jaxcr.TurbulenceParameters.paper(n_modes=256))
    pts = jax.random.uniform(jax.random.key(4), (4000, 3), minval=-1e4, maxval=1e4)
    b64 = field.turbulent(pts)
    b32 = field.with_precision("float32").turbulent(pts)
    assert b32.dtype == b64.dtype
    rms = float(jnp.sqrt(jnp.mean(jnp.sum(b64**2, -1))))
    assert float(jnp.abs(b32 - b64).max()) < 1e-5 * rms
    with pytest.raises(ValueError, match="precision"):
        field.with_precision("float16")


def test_fused_layout_agrees_with_matmul_layout():
    # layout="fused" (broadcast phases + one reduction, the GPU form), "split" (broadcast
    # phases, product for the sum) and "matmul" (two BLAS products, the CPU form) are the same
    # sum in other orders. float64: the phases k·r ~ 10⁶
    # rad are themselves rounded differently by the two orders (ulp(10⁶) ≈ 1.2e-10 rad), so the
    # sums may differ by ~1e-11-1e-10 of the rms field: asserted < 1e-9. float32: its rounding,
    # < 1e-5 rms. The exact derivatives db/dr (AD through the custom JVP of fast_cos) agree to
    # 1e-9 of their largest element. "auto" is the native kernel on CPU (the same 1e-9), or
    # "matmul" where the kernel is unavailable.
    import jaxcr

    field = jaxcr.PlaneWaveTurbulence.sample(5, jaxcr.TurbulenceParameters.paper(n_modes=256))
    pts = jax.random.uniform(jax.random.key(6), (2000, 3), minval=-1e4, maxval=1e4)
    ref = field.with_layout("matmul").turbulent(pts)
    rms = float(jnp.sqrt(jnp.mean(jnp.sum(ref**2, -1))))
    fused = field.with_layout("fused")
    assert float(jnp.abs(fused.turbulent(pts) - ref).max()) < 1e-9 * rms
    assert float(jnp.abs(field.with_layout("split").turbulent(pts) - ref).max()) < 1e-9 * rms
    assert float(jnp.abs(fused.with_precision("float32").turbulent(pts) - ref).max()) < 1e-5 * rms
    assert fused.turbulent(pts).dtype == ref.dtype
    jac = jax.vmap(jax.jacfwd(fused.turbulent))(pts[:50])
    jac_ref = jax.vmap(jax.jacfwd(field.with_layout("matmul").turbulent))(pts[:50])
    assert float(jnp.abs(jac - jac_ref).max()) < 1e-9 * float(jnp.abs(jac_ref).max())
    assert field.resolved_layout() == ("native" if jaxcr.native.available() else "matmul")
    assert float(jnp.abs(field.turbulent(pts) - ref).max()) < 1e-9 * rms
    ens = jaxcr.PlaneWaveTurbulence.sample_ensemble(0, jaxcr.TurbulenceParameters(n_modes=16), 3).with_layout("fused")
    assert ens.realisation(1).layout == "fused"
    with pytest.raises(ValueError, match="layout"):
        field.with_layout("gemm")
