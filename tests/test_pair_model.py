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

from jaxcr.pair_model import PairModelLaw, pair_spectrum, pair_time_from_spectrum
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
