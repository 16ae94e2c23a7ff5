"""The experimental gradient estimators against pathwise AD (short T) and each other (long T), and
the GLS χ² they differentiate against numpy."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcr.inference import experimental as inference
from jaxcr.inference.experimental import CRN, SPSA, Pathwise, Score
from jaxcr.observations import ObservedSpectrum
from jaxcr.spectrum_model import SpectrumModel, spectrum_covariance
from jaxcr.turbulence_model import PlaneWaveGJ99

# the estimators compared below, with the step of the short-time comparison (h = 0.05)
ESTIMATORS = {"pathwise": Pathwise(), "crn": CRN(step=0.05), "spsa": SPSA(step=0.05), "score": Score(step=0.05)}

THETA = jnp.array([0.0, np.log(0.1)])  # σ² = 1, r_L/λ_c = 0.1


def _model(T):
    return SpectrumModel(
        nside=2, n_realisations=8, time=T, turbulence=PlaneWaveGJ99(n_modes=16, gaussian_amplitudes=True)
    )


@pytest.fixture(scope="module")
def short():
    m = _model(3.0)
    return {k: inference.estimate_gradient(THETA, m, e) for k, e in ESTIMATORS.items()}


def test_lyapunov_exponent_is_reported_beside_every_gradient(short):
    # λ of the r_L = 0.1 λ_c turbulence was measured at 0.147 Ω (tests/test_chaos.py, 64 modes);
    # this 16-mode model must give a positive, finite λ of the same order, the same for every
    # estimator (it depends on θ and the model only), with a standard error.
    lams = {k: e.lyapunov_exponent for k, e in short.items()}
    assert all(0.02 < lam < 1.0 for lam in lams.values()), lams
    assert len(set(lams.values())) == 1
    est = short["crn"]
    assert np.isfinite(est.lyapunov_stderr) and est.lyapunov_stderr < est.lyapunov_exponent
    assert est.chaos_growth == pytest.approx(est.lyapunov_exponent * 3.0)


def test_crn_matches_pathwise_at_short_time(short):
    # Same realisations, central differences with h = 0.05 in ln θ: O(h²) bias ≈ 0.3 %;
    # tolerance 2 % of the largest entry of each column.
    pw, crn = np.asarray(short["pathwise"].jacobian), np.asarray(short["crn"].jacobian)
    assert np.all(np.abs(crn - pw) <= 0.02 * np.abs(pw).max(0)), (crn, pw)


@pytest.mark.parametrize("method", ["spsa", "score"])
def test_stochastic_estimators_agree_with_pathwise_within_their_errors(short, method):
    # ΩT = 3 (λT ≈ 0.5): pathwise AD is exact for these realisations. SPSA and the score
    # function are unbiased but noisy: each entry within 3 of its own standard errors.
    pw, est = np.asarray(short["pathwise"].jacobian), short[method]
    err = np.asarray(est.jacobian_stderr)
    assert np.all(np.abs(np.asarray(est.jacobian) - pw) <= 3 * err + 1e-12 * np.abs(pw).max())
    assert est.methods[0] == method


@pytest.mark.slow
def test_pathwise_gradient_is_useless_at_long_times_while_estimators_agree():
    # ΩT = 300, λ ≈ 0.15: pathwise derivatives grow like e^{λT} ~ 1e20 (measured ~1e28),
    # while CRN, SPSA and score-function estimates stay O(1e2) and agree with CRN within 3
    # combined standard errors.
    m = _model(300.0)
    with pytest.warns(UserWarning, match="chaos amplifies"):  # λT ≈ 44 > PATHWISE_MAX_GROWTH
        est = {k: inference.estimate_gradient(THETA, m, e) for k, e in ESTIMATORS.items()}
    assert est["pathwise"].chaos_growth > inference.PATHWISE_MAX_GROWTH
    assert np.abs(np.asarray(est["pathwise"].jacobian)).max() > 1e15
    crn, crn_se = np.asarray(est["crn"].jacobian), np.asarray(est["crn"].jacobian_stderr)
    assert np.abs(crn).max() < 1e5
    for k in ("spsa", "score"):
        e, se = np.asarray(est[k].jacobian), np.asarray(est[k].jacobian_stderr)
        assert np.all(np.abs(e - crn) <= 3 * np.hypot(se, crn_se) + 1e-9), k


def test_estimator_and_model_input_errors():
    with pytest.raises(TypeError, match="estimator"):
        inference.estimate_gradient(THETA, _model(1.0), "crn")
    with pytest.raises(ValueError, match="step"):
        CRN(step=-0.1)
    with pytest.raises(ValueError, match="gaussian_amplitudes"):
        inference.estimate_gradient(THETA, SpectrumModel(nside=2, n_realisations=4), Score())
    with pytest.raises(ValueError, match="nside"):
        SpectrumModel(nside=3)
    with pytest.raises(ValueError, match="theta"):
        inference.estimate_gradient(jnp.array([0.0, jnp.nan]), _model(1.0), CRN())
    with pytest.raises(TypeError, match="model"):
        inference.estimate_gradient(THETA, "model", CRN())


def _synthetic_observed(rng, ell, sky_realisations):
    return ObservedSpectrum(
        ell=ell,
        cl=1e-6 / ell**2 * (1 + 0.1 * rng.normal(size=ell.size)) + 1e-9,
        sigma=0.05e-6 / ell**2,
        observatory="x",
        energy_tev=1.0,
        noise_level=1e-9,
        sky_realisations=sky_realisations,
    )


def test_chi2_uses_the_full_sky_covariance_and_the_gls_amplitude():
    # Independent reference: NumPy's np.cov for S, Σ = a² S (1/R_sky + 1/N_B) + diag(σ²) and
    # rᵀΣ⁻¹r by np.linalg.solve. Per-realisation spectra with a common lognormal factor (strong
    # ℓ-ℓ correlation, as in backtracked skies). The profiled a must be the fixed point of the
    # GLS amplitude (to 1e-10) and minimise χ² at that Σ.
    rng = np.random.default_rng(0)
    R, lmax = 40, 6
    ell = np.arange(1, lmax + 1)
    spectra = np.exp(rng.normal(size=(R, 1)) + 0.3 * rng.normal(size=(R, lmax + 1))) / np.arange(1, lmax + 2) ** 2
    obs = _synthetic_observed(rng, ell, sky_realisations=4)
    chi2, a = inference.chi2_profiled(jnp.asarray(spectra.mean(0)), spectrum_covariance(jnp.asarray(spectra)), obs, R)
    S = np.cov(spectra[:, ell].T)
    m, o = spectra.mean(0)[ell], obs.cl - obs.noise_level

    def sigma(a):
        return a**2 * S * (1 / 4 + 1 / R) + np.diag(obs.sigma**2)

    def chi2_np(a, sig):
        r = o - a * m
        return r @ np.linalg.solve(sig, r)

    sig = sigma(float(a))
    a_gls = (m @ np.linalg.solve(sig, o)) / (m @ np.linalg.solve(sig, m))
    assert float(a) == pytest.approx(a_gls, rel=1e-10)
    assert float(chi2) == pytest.approx(chi2_np(float(a), sig), rel=1e-10)
    assert chi2_np(float(a) * 1.001, sig) > float(chi2) and chi2_np(float(a) * 0.999, sig) > float(chi2)
    # the sky variance matters: a diagonal-only χ² (the old error model) differs by > 10 %
    assert abs(chi2_np(float(a), np.diag(np.diag(sig))) - float(chi2)) > 0.1 * float(chi2)
    # more sky realisations → smaller sky variance → larger χ² for the same residuals
    obs64 = dataclasses.replace(obs, sky_realisations=64)
    chi2_64, _ = inference.chi2_profiled(
        jnp.asarray(spectra.mean(0)), spectrum_covariance(jnp.asarray(spectra)), obs64, R
    )
    assert float(chi2_64) > float(chi2)
