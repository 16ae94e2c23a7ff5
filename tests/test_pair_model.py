"""The semi-analytic pair model of ⟨C_ℓ⟩ (jaxcr.pair_model) against independent references: the
Legendre transform of its pair correlation by numerical quadrature, Eq. 6 for its mean dipole,
the harmonic-number form of its multipole sum (Eq. 8), automatic against analytic derivatives, and
the power-law fit against laws it must recover exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import eval_legendre

from jaxcr.inference.emulator import SpectrumEmulator
from jaxcr.pair_model import (
    PairModelBaseline,
    PairModelLaw,
    pair_spectrum,
    pair_time_from_spectrum,
    shipped_pair_model_law,
)
from jaxcr.theory import standard_diffusion_dipole

K = np.diag([0.4, 0.4, 5.0])
G = np.array([0.6, 0.0, 0.8])
TAU = 3.7


def test_pair_part_is_the_legendre_transform_of_the_pair_correlation():
    """2π ∫ P_ℓ(μ) Γ(μ) dμ with Γ = 2 gᵀKg [t₀ + τ ln(1/√(2(1−μ)))] by adaptive quadrature equals the
    closed form 4πτ gᵀKg/(ℓ(ℓ+1)) for ℓ = 2…20 to 1e-7 relative (quadrature of a log singularity),
    whatever t₀; at ℓ = 1 the closed form adds the Fick dipole."""
    kgg = G @ K @ G
    ell = np.arange(1, 21)
    model = np.asarray(pair_spectrum(ell, K, G, TAU))
    for t0 in (0.0, 12.0):
        gamma = lambda mu: 2 * kgg * (t0 + TAU * np.log(1 / np.sqrt(2 * (1 - mu))))
        for i, l in enumerate(ell):
            numeric = 2 * np.pi * quad(lambda mu: eval_legendre(l, mu) * gamma(mu), -1, 1, limit=500,
                                       points=[0.99, 0.9999])[0]  # fmt: skip
            fick = 4 * np.pi * np.sum((K @ G) ** 2) if l == 1 else 0.0
            assert numeric + fick == pytest.approx(model[i], rel=1e-7), (l, t0)


def test_mean_dipole_is_eq6_and_the_multipole_sum_follows_eq8():
    """τ = 0 leaves Eq. 6's 4π|Kg|² at ℓ = 1 and nothing else (exact); the pair part summed to L,
    Σ(2ℓ+1)C_ℓ/4π, is τ gᵀKg (H_L + H_{L+1} − 1) to 1e-12 and tends to 2τ gᵀKg (ln L + γ − ½)
    (difference below 1/L), i.e. T = τ ln L + const in Eq. 8's 2T gᵀKg."""
    ell = np.arange(1, 2001)
    bare = np.asarray(pair_spectrum(ell, K, G, 0.0))
    assert bare[0] == pytest.approx(float(standard_diffusion_dipole(K, G)), rel=1e-14) and not np.any(bare[1:])
    pair = np.asarray(pair_spectrum(ell, K, G, TAU)) - bare
    kgg = G @ K @ G
    for L in (10, 100, 2000):
        total = np.sum((2 * ell[:L] + 1) * pair[:L]) / (4 * np.pi)
        harmonic = np.sum(1 / ell[:L]) + np.sum(1 / np.arange(1, L + 2)) - 1
        assert total == pytest.approx(TAU * kgg * harmonic, rel=1e-12)
        assert abs(total / (2 * TAU * kgg) - (np.log(L) + np.euler_gamma - 0.5)) < 1 / L


def test_derivatives_are_the_analytic_ones():
    """∂C_ℓ/∂τ = 4π gᵀKg/(ℓ(ℓ+1)) and ∂C_ℓ/∂K_zz = 4π(2 (Kg)_z g_z δ_ℓ1 + τ g_z²/(ℓ(ℓ+1))) by JAX,
    to 1e-12."""
    ell = jnp.arange(1, 6)
    d_tau = jax.jacfwd(lambda t: pair_spectrum(ell, K, G, t))(TAU)
    np.testing.assert_allclose(d_tau, 4 * np.pi * (G @ K @ G) / (ell * (ell + 1)), rtol=1e-12)
    d_k = jax.jacfwd(lambda k: pair_spectrum(ell, k, G, TAU))(jnp.asarray(K))[:, 2, 2]
    expected = 4 * np.pi * (2 * (K @ G)[2] * G[2] * (ell == 1) + TAU * G[2] ** 2 / (ell * (ell + 1)))
    np.testing.assert_allclose(d_k, expected, rtol=1e-12)


def test_pair_time_and_laws_recover_what_made_the_data():
    """τ from a model spectrum with made-up errors is τ (1e-12); power laws fitted to values made by
    known laws return their coefficients (1e-10), and the law's spectrum equals pair_spectrum."""
    ell = np.arange(1, 21)
    cl = np.asarray(pair_spectrum(ell, K, G, TAU))
    tau, se = pair_time_from_spectrum(ell, cl, 0.1 * cl, K, G)
    assert tau == pytest.approx(TAU, rel=1e-12) and 0 < se < tau
    s2, rho = np.meshgrid([0.3, 1.0, 3.0], [0.05, 0.1, 0.2])
    s2, rho = s2.ravel(), rho.ravel()
    truth = dict(k_parallel=(2.0, -1.1, 0.4), k_perpendicular=(0.3, 0.2, 0.9), pair_time=(0.5, -0.4, -1.0))
    make = lambda c: c[0] * s2 ** c[1] * rho ** c[2]
    law = PairModelLaw.fit(s2, rho, make(truth["k_parallel"]), make(truth["k_perpendicular"]),
                           make(truth["pair_time"]), 0.1 * make(truth["pair_time"]))  # fmt: skip
    for name, coef in truth.items():
        np.testing.assert_allclose(getattr(law, name), coef, rtol=1e-10)
    k = np.diag([make(truth["k_perpendicular"])[4]] * 2 + [make(truth["k_parallel"])[4]])
    np.testing.assert_allclose(law.spectrum(1.0, 0.1, ell, G), pair_spectrum(ell, k, G, make(truth["pair_time"])[4]),
                               rtol=1e-10)  # fmt: skip


def test_pair_model_refuses_bad_input():
    with pytest.raises(ValueError, match="ell must be >= 1"):
        pair_spectrum([0, 1], K, G, TAU)
    with pytest.raises(ValueError, match="diffusion_tensor must be"):
        pair_spectrum([1], K[:2], G, TAU)
    with pytest.raises(ValueError, match=">= 4 points"):
        PairModelLaw.fit([1, 2], [0.1, 0.2], [1, 1], [1, 1], [1, 1], [1, 1])


LAW = PairModelLaw(
    k_parallel=(0.9, -0.9, -0.86), k_perpendicular=(0.075, 0.56, -0.58), pair_time=(1.45, -0.36, -0.63),
    sigma2_range=(0.3, 3.0), rho_range=(0.05, 0.2),
)  # fmt: skip


def test_pair_baseline_is_the_log_pair_spectrum_at_any_gradient_angle():
    """PairModelBaseline(θ) equals ln pair_spectrum(ℓ, K(σ², ρ), g, τ(σ², ρ)) for a unit g at the
    stated angle to B0 (1e-12: the same arithmetic), row by row for a batch of θ, and its gradient
    in θ equals central finite differences (step 1e-5: truncation ~1e-9)."""
    ells = np.arange(1, 16)
    for cos2 in (1.0, 0.3, 0.0):
        base = PairModelBaseline(LAW, ells, cos2)
        g = np.array([np.sqrt(1 - cos2), 0.0, np.sqrt(cos2)])
        thetas = np.log([[1.0, 0.1], [0.5, 0.003], [4.0, 0.2]])
        got = np.asarray(base(thetas))
        for t, row in zip(thetas, got):
            s2, rho = np.exp(t)
            k = np.asarray(LAW.diffusion_tensor(s2, rho))
            want = np.log(np.asarray(pair_spectrum(ells, k, g, LAW.power_law(LAW.pair_time, s2, rho))))
            np.testing.assert_allclose(row, want, rtol=1e-12)
        jac = np.asarray(jax.jacfwd(base)(jnp.asarray(thetas[1])))
        for i in range(2):
            step = np.eye(2)[i] * 1e-5
            fd = (np.asarray(base(thetas[1] + step)) - np.asarray(base(thetas[1] - step))) / 2e-5
            np.testing.assert_allclose(jac[:, i], fd, rtol=1e-7, atol=1e-9)
    with pytest.raises(ValueError, match="cos2_gradient_b0"):
        PairModelBaseline(LAW, ells, 1.5)


def _transfer_sky(thetas, base, rng=None, n_real=1, scatter=0.0):
    """ln⟨C_ℓ⟩ = baseline(θ) + b_ℓ + c_ℓ·ln σ² (a transfer linear in θ), and log-normal draws of it."""
    ell = np.asarray(base.ells, dtype=float)
    mean = np.asarray(base(thetas)) - 1.5 + 0.1 * np.log(ell) + 0.2 * thetas[:, :1]
    if rng is None:
        return mean
    return np.exp(mean[:, None, :] + scatter * rng.standard_normal((len(thetas), n_real, len(ell))))


def test_an_emulator_with_a_pair_baseline_extrapolates_the_pair_model_exactly():
    """Per-point ⟨ln C_ℓ⟩ built as pair model + a transfer (per-ℓ constant, or linear in θ) on a
    design in ρ 0.05-0.2 is reproduced by the baseline emulator of degree 0 (resp. 1) at ρ = 10⁻³,
    50 times below the design, to 1e-9 e-folds (a least-squares fit of exact data: round-off only).
    At ℓ ≥ 2 the pair model is a power law in σ² and ρ, so ln C_ℓ is linear in θ (its second
    differences vanish to 1e-12) and a degree-1 transfer refits those slopes; only the dipole (Fick
    plus pairs) is curved."""
    ells = np.arange(1, 16)
    base = PairModelBaseline(LAW, ells, 1.0)
    design = np.log(np.array([[s, r] for s in (0.3, 1.0, 3.0) for r in (0.05, 0.1, 0.2)]))
    covs = np.repeat(np.eye(len(ells))[None] * 0.1, len(design), 0)
    centre, scale = design.mean(0), np.ptp(design, 0) / 2
    far = np.log([[1.0, 1e-3], [5.0, 0.002]])
    constant = np.asarray(base(design)) - 1.5 + 0.1 * np.log(ells)
    emu0 = SpectrumEmulator.fit_log(design, constant, covs, 32, 0, centre, scale, baseline=base)
    np.testing.assert_allclose(
        np.stack([emu0.log_mean(t) for t in far]), np.asarray(base(far)) - 1.5 + 0.1 * np.log(ells), atol=1e-9
    )
    emu1 = SpectrumEmulator.fit_log(design, _transfer_sky(design, base), covs, 32, 1, centre, scale, baseline=base)
    np.testing.assert_allclose(np.stack([emu1.log_mean(t) for t in far]), _transfer_sky(far, base), atol=1e-9)
    assert max(np.max(emu0.reduced_chi2), np.max(emu1.reduced_chi2)) < 1e-12
    h = 0.7
    second = [np.asarray(base(t + h * e) - 2 * base(t) + base(t - h * e)) for t in far for e in np.eye(2)]
    assert np.max(np.abs(np.array(second)[:, 1:])) < 1e-12 and np.max(np.abs(np.array(second)[:, 0])) > 1e-3


def test_a_pair_model_artifact_fits_beyond_its_design_and_says_so(tmp_path):
    """artifact_from_spectra with a pair model: saved and loaded with the same version and the same
    emulated ⟨ln C_ℓ⟩; fits in the wider box; a sky drawn from the model at ρ = 0.005 (outside the
    design ρ 0.05-0.2) is recovered within its 95 % interval and flagged as an extrapolation; a box
    wider than the design without a pair model is refused before any fit."""
    from jaxcr.analysis import Analysis
    from jaxcr.inference import EmulatorArtifact, artifact_from_spectra, fit_sky
    from jaxcr.observations import ObservedSpectrum
    from jaxcr.parametrisation import plane_wave_parametrisation

    nside, ells = 8, np.arange(1, 16)
    base = PairModelBaseline(LAW, ells, 1.0)
    params = plane_wave_parametrisation((0.3, 3.0), (0.05, 0.2))
    design = params.grid(3)
    rng = np.random.default_rng(5)
    draws = _transfer_sky(design, base, rng, n_real=48, scatter=0.3)
    spectra = np.zeros((len(design), 48, 2, 2 * nside))
    spectra[:, :, :, 1:] = draws[:, :, None, :]  # two identical times: converged; ℓ = 0 unused
    args = (params, design, spectra, np.zeros(spectra.shape[:3]), (1.0, 2.0), Analysis("full"), nside)
    art = artifact_from_spectra(*args, ells=ells, pair_model=LAW, box={"rho": (1e-3, 0.2)})
    art.save(tmp_path / "pair.npz")
    back = EmulatorArtifact.load(tmp_path / "pair.npz")
    assert back.version == art.version and back.emulator.degree == 1
    assert back.parameters["rho"].low == 1e-3 and back.design_box["rho"].low == pytest.approx(0.05)
    theta = np.log([1.0, 0.005])
    np.testing.assert_allclose(back.log_emulator.log_mean(theta), art.log_emulator.log_mean(theta), rtol=1e-13)
    truth = np.exp(_transfer_sky(theta[None], base)[0] + 0.3 * rng.standard_normal(len(ells)))
    sky = ObservedSpectrum(ell=ells, cl=truth, sigma=1e-3 * truth, noise_level=0.0, analysis=Analysis("full"),
                           energy_tev=10.0, observatory="synthetic", source="test")  # fmt: skip
    result = fit_sky(sky, back, amplitude=1.0, progress=False)
    lo, hi, *_ = result.intervals["rho"]["95"]
    assert lo < 0.005 < hi and hi < 0.05, (lo, hi)
    assert any("outside the simulated box" in f for f in result.flags)
    with pytest.raises(ValueError, match="needs pair_model"):
        artifact_from_spectra(*args, ells=ells, box={"rho": (1e-3, 0.2)})
    with pytest.raises(ValueError, match=r"box\['rho'\] = \(0, 0.2\) must be finite and > 0"):
        artifact_from_spectra(*args, ells=ells, pair_model=LAW, box={"rho": (0.0, 0.2)})
    with pytest.raises(ValueError, match="does not exist"):
        PairModelLaw.load(tmp_path / "missing.json")
    assert PairModelLaw.load() == shipped_pair_model_law()
