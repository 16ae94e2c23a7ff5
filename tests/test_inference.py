"""Gradient estimators against pathwise AD (short T) and each other (long T); fit diagnostics."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcr import inference
from jaxcr.inference import CRN, SPSA, EmulatorFit, GradientFit, Pathwise, Score
from jaxcr.inference.profile import level_interval
from jaxcr.observations import ObservedSpectrum
from jaxcr.synthetic import synthetic_spectrum

# the estimators compared below, with the step of the short-time comparison (h = 0.05)
ESTIMATORS = {"pathwise": Pathwise(), "crn": CRN(step=0.05), "spsa": SPSA(step=0.05), "score": Score(step=0.05)}

THETA = jnp.array([0.0, np.log(0.1)])  # σ² = 1, r_L/λ_c = 0.1


def _full_sky_spectrum(ell, cl, sigma, nside, energy_tev=1.0, sky_realisations=1):
    """A full-sky test spectrum without shot noise (observatory "test")."""
    return ObservedSpectrum(
        ell=ell,
        cl=cl,
        sigma=sigma,
        observatory="test",
        energy_tev=energy_tev,
        noise_level=0.0,
        dec_min_deg=-90.0,
        dec_max_deg=90.0,
        nside=nside,
        sky_realisations=sky_realisations,
    )


def _injected_sky(model):
    """The reduced injection-recovery sky: σ² = 1, r_L/λ_c = 0.1, the mean of 64 realisations
    independent of the model's (seed 1), amplitude 1e-6, noise level 1e-8, 5 % measurement noise."""
    return synthetic_spectrum(
        jnp.log(jnp.array([1.0, 0.1])),
        model,
        observatory="synthetic",
        energy_tev=20.0,
        amplitude=1e-6,
        noise_level=1e-8,
        sky_realisations=64,
        seed=1,
    )


def _model(T):
    return inference.SpectrumModel(nside=2, n_realisations=8, time=T, n_modes=16, gaussian_amplitudes=True)


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


@pytest.mark.slow
def test_joint_fit_without_known_gradient_reports_lambda_c_b0_degeneracy():
    # Spectral shapes depend on ρ_k = r_L(E_k, B0)/λ_c ∝ 1/(λ_c B0) only, so moving along
    # ln λ_c − ln B0 changes nothing: the fit must say so (a Fisher null direction, infinite
    # uncertainties) instead of returning arbitrary λ_c and B0 with finite errors, while the
    # product λ_c·B0 stays constrained (a positive Fisher eigenvalue along ln λ_c + ln B0).
    m = inference.SpectrumModel(nside=2, n_realisations=16, time=5.0, n_modes=8)
    specs = [
        synthetic_spectrum(
            THETA, m, observatory="synthetic", energy_tev=e, amplitude=1e-9, noise_level=0.0, ells=[1, 2, 3]
        )
        for e in (2.0, 20.0)
    ]
    res = inference.fit_joint(
        specs,
        m,
        {"sigma2": 1.0, "lambda_c_pc": 0.07, "b0_microgauss": 3.0},
        method=GradientFit(max_steps=2),
        progress=False,
    )
    assert any(
        "-1.00·ln lambda_c_pc +1.00·ln b0_microgauss" in d or "+1.00·ln lambda_c_pc -1.00·ln b0_microgauss" in d
        for d in res.degenerate
    ), res.degenerate
    assert np.isinf(res.log_uncertainties["lambda_c_pc"]) and np.isinf(res.log_uncertainties["b0_microgauss"])
    product = [v for v, _ in res.constrained_directions() if abs(abs(v[1]) - abs(v[2])) < 0.1 and v[1] * v[2] > 0]
    assert product, res.constrained_directions()


def test_estimator_and_model_input_errors():
    with pytest.raises(TypeError, match="estimator"):
        inference.estimate_gradient(THETA, _model(1.0), "crn")
    with pytest.raises(ValueError, match="step"):
        CRN(step=-0.1)
    with pytest.raises(ValueError, match="gaussian_amplitudes"):
        inference.estimate_gradient(THETA, inference.SpectrumModel(nside=2, n_realisations=4), Score())
    with pytest.raises(ValueError, match="nside"):
        inference.estimate_gradient(THETA, inference.SpectrumModel(nside=3), CRN())
    with pytest.raises(ValueError, match="theta"):
        inference.estimate_gradient(jnp.array([0.0, jnp.nan]), _model(1.0), CRN())
    spec = ObservedSpectrum(np.array([1]), np.array([1.0]), np.array([0.1]), "x", 1.0, 0.0, -10.0, 10.0)
    with pytest.raises(ValueError, match="rho"):
        inference.fit_spectrum(spec, _model(1.0), {"sigma2": 1.0})


def _synthetic_observed(rng, ell, sky_realisations):
    return ObservedSpectrum(
        ell=ell,
        cl=1e-6 / ell**2 * (1 + 0.1 * rng.normal(size=ell.size)) + 1e-9,
        sigma=0.05e-6 / ell**2,
        observatory="x",
        energy_tev=1.0,
        noise_level=1e-9,
        dec_min_deg=-90.0,
        dec_max_deg=90.0,
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
    chi2, a = inference.chi2_profiled(
        jnp.asarray(spectra.mean(0)), inference.spectrum_covariance(jnp.asarray(spectra)), obs, R
    )
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
        jnp.asarray(spectra.mean(0)), inference.spectrum_covariance(jnp.asarray(spectra)), obs64, R
    )
    assert float(chi2_64) > float(chi2)


@pytest.mark.slow
def test_injection_recovery_reduced():
    # Reduced injection-recovery (the full one is experiments/fit_spectra.py): a synthetic sky,
    # the mean of 64 realisations independent of the fit's 32, at σ² = 1 and r_L/λ_c = 0.1 with
    # 5 % measurement noise, nside 4 (ℓ = 1..7), ΩT = 20, amplitude profiled; started a factor
    # 2 away in both parameters. What the data constrain at this size is one combination of
    # ln σ² and ln ρ (the Fisher matrix with the Jacobian noise removed has one positive
    # eigenvalue; the other direction is reported DEGENERATE, not given a fake error bar).
    # Checks: convergence, a χ² consistent with 7 points (the old diagonal error model gave
    # 22-80), every constrained direction recovered within 2σ of its own uncertainty, and any
    # unconstrained parameter reported with an infinite error.
    model = inference.SpectrumModel(nside=4, n_realisations=32, time=20.0, n_modes=32)
    truth = np.log([1.0, 0.1])
    spec = _injected_sky(model)
    assert spec.synthetic and spec.sky_realisations == 64
    res = inference.fit_spectrum(spec, model, {"sigma2": 2.0, "rho": 0.2}, method=GradientFit(), progress=False)
    assert res.converged, res.message
    assert res.chi2 < 20
    delta = np.log([res.parameters["sigma2"], res.parameters["rho"]]) - truth
    directions = res.constrained_directions()
    assert directions, "the fit must constrain at least one combination"
    for vec, sigma in directions:
        assert abs(vec @ delta) < 2 * sigma, (vec, vec @ delta, sigma)
    if len(directions) < 2:
        assert res.degenerate and any(np.isinf(v) for v in res.log_uncertainties.values())
    assert all(np.isfinite(h["lyapunov"][0]) and h["lyapunov"][0] > 0 for h in res.history)  # λ beside every step


def test_profile_likelihood_interval_of_a_gaussian_is_its_marginal_error():
    # For a Gaussian likelihood the profile likelihood equals the marginal: with
    # χ² = dᵀC⁻¹d in (ln σ², ln ρ) and strong correlation (0.8), the Δχ² = 1 (4) interval of each
    # parameter is ±1 (2) × sqrt(C_ii) about the truth. On a 31 × 31 grid the parabolic
    # refinement and the linear interpolation of the crossings are exact to ~1 % of the width.
    cov = np.array([[0.09, 0.8 * 0.3 * 0.1], [0.8 * 0.3 * 0.1, 0.01]])
    centre = np.log([1.3, 0.1])
    s2 = np.exp(np.linspace(centre[0] - 1.2, centre[0] + 1.2, 31))
    rho = np.exp(np.linspace(centre[1] - 0.4, centre[1] + 0.4, 31))
    d = np.stack(np.meshgrid(np.log(s2), np.log(rho), indexing="ij"), -1) - centre
    chi2 = np.einsum("...i,ij,...j->...", d, np.linalg.inv(cov), d) + 5.0
    scan = inference.LikelihoodScan(
        sigma2=s2, rho=rho, chi2=chi2, amplitudes=np.ones_like(chi2), n_data=7, n_realisations=1, wall_time_s=0.0
    )
    for k, name in enumerate(("sigma2", "rho")):
        for level, n_sigma in ((1.0, 1.0), (4.0, 2.0)):
            lo, hi, closed_lo, closed_hi = scan.interval(name, level)
            assert closed_lo and closed_hi
            half = n_sigma * np.sqrt(cov[k, k])
            assert np.log(hi) - centre[k] == pytest.approx(half, rel=0.01)
            assert centre[k] - np.log(lo) == pytest.approx(half, rel=0.01)
    best = scan.best()
    assert np.log(best["sigma2"]) == pytest.approx(centre[0], abs=1e-6)
    assert best["chi2"] == pytest.approx(5.0, abs=1e-9)
    # a profile that does not close inside the grid is flagged open, not cut silently
    lo, hi, closed_lo, closed_hi = scan.interval("sigma2", 100.0)
    assert not closed_lo and not closed_hi and lo == pytest.approx(s2[0]) and hi == pytest.approx(s2[-1])
    with pytest.raises(ValueError, match="name"):
        scan.interval("b0")
    # points flagged untrusted (beyond an emulator's box) neither host the minimum nor close an end
    x = np.linspace(-2.0, 2.0, 41)
    stop = np.abs(x) > 1.5 + 1e-9
    dy = np.where(stop, -5.0, x**2)
    lo, hi, closed_lo, closed_hi = level_interval(x, dy, 1.0, stop=stop)
    assert (np.log(lo), np.log(hi), closed_lo, closed_hi) == (pytest.approx(-1.0), pytest.approx(1.0), True, True)
    lo, hi, closed_lo, closed_hi = level_interval(x, dy, 4.0, stop=stop)
    assert (np.log(lo), np.log(hi), closed_lo, closed_hi) == (pytest.approx(-1.5), pytest.approx(1.5), False, False)


def test_profile_likelihood_scan_of_a_noise_free_model_sky_has_its_minimum_at_the_truth():
    # The "observed" sky is the model's own realisations at the truth (same keys: a CRN scan) times a known
    # amplitude, with tiny σ_ℓ: the residual vanishes exactly at the true grid point (χ² ~ 0
    # there, > 0 elsewhere), and each grid value equals chi2_profiled evaluated directly.
    model = inference.SpectrumModel(nside=2, n_realisations=4, time=2.0, n_modes=8, dt=0.05)
    truth = jnp.array([0.0, np.log(0.1)])
    spectra = inference.realisation_spectra(truth, model)
    ell = np.arange(1, model.lmax + 1)
    cl = 2e-6 * np.asarray(spectra.mean(0))[ell]
    obs = _full_sky_spectrum(ell, cl, 1e-4 * cl, nside=2, sky_realisations=10**6)
    scan = inference.profile_likelihood(
        obs, model, [0.5, 1.0, 2.0], [0.05, 0.1, 0.2], common_random_numbers=True, progress=False
    )
    assert np.unravel_index(np.argmin(scan.chi2), scan.chi2.shape) == (1, 1)
    assert scan.chi2[1, 1] < 1e-8 and np.all(np.delete(scan.chi2.ravel(), 4) > 1.0)
    assert scan.amplitudes[1, 1] == pytest.approx(2e-6, rel=1e-9)
    s = inference.realisation_spectra(jnp.log(jnp.array([2.0, 0.05])), model)
    direct, _ = inference.chi2_profiled(s.mean(0), inference.spectrum_covariance(s), obs, model.n_realisations)
    assert scan.chi2[2, 0] == pytest.approx(float(direct), rel=1e-10)
    with pytest.raises(ValueError, match="increasing"):
        inference.profile_likelihood(obs, model, [1.0, 0.5, 2.0], [0.05, 0.1, 0.2], progress=False)


def test_emulated_scan_reproduces_a_smooth_model_and_its_gaussian_chi2():
    # A model whose mean spectrum is exactly log-quadratic in (ln σ², ln ρ) and whose covariance
    # is ⟨C⟩⟨C⟩ᵀ ∘ R (R fixed) is represented exactly by the degree-2 emulator. With a huge
    # number of model realisations the emulator's own error vanishes, so the emulated χ² must
    # equal an independent NumPy evaluation of rᵀΣ⁻¹r, Σ = a²⟨C⟩⟨C⟩ᵀ∘R/R_sky + diag(σ²), at
    # any point (1e-6 relative), with ⟨C⟩ in Σ taken at that point ("varying") or at the best fit
    # ("fixed"), and its minimum (≈ 0) at the point the sky was made at.
    s2 = np.exp(np.linspace(np.log(0.25), np.log(4.0), 7))
    rho = np.exp(np.linspace(np.log(0.04), np.log(0.25), 7))
    L, ell = 6, np.arange(1, 6)

    def mean(x, y):  # ln C_ℓ quadratic in x = ln σ², y = ln ρ
        l = np.arange(L)
        return np.exp(1.0 - 0.8 * np.log1p(l) + 0.3 * x - 0.1 * x**2 + (0.2 + 0.05 * l) * y + 0.04 * x * y)

    R = 0.6 * np.eye(L) + 0.4  # relative covariance: 100 % scatter, correlation 0.4
    X, Y = np.meshgrid(np.log(s2), np.log(rho), indexing="ij")
    means = mean(X[..., None], Y[..., None])
    covs = means[..., :, None] * means[..., None, :] * R
    x0, y0, a, r_sky = np.log(1.0), np.log(0.1), 2e-6, 64
    cl = a * mean(x0, y0)[ell]
    obs = _full_sky_spectrum(ell, cl, 0.05 * cl, nside=4, sky_realisations=r_sky)
    scan = inference.LikelihoodScan(
        sigma2=s2,
        rho=rho,
        chi2=np.zeros((7, 7)),
        amplitudes=np.zeros((7, 7)),
        n_data=5,
        n_realisations=10**12,
        wall_time_s=0.0,
        mean_cl=means,
        cov_cl=covs,
        observed=obs,
        amplitude=a,
    )
    for covariance in ("varying", "fixed"):
        emu = scan.emulated(points=41, degree=2, covariance=covariance)
        assert emu.emulator["max_reduced_chi2"] < 1e-12
        for i, j in [(20, 20), (5, 30), (33, 9), (40, 40)]:
            m = a * mean(np.log(emu.sigma2[i]), np.log(emu.rho[j]))[ell]
            m_cov = m if covariance == "varying" else cl  # fixed: Σ at the best fit, here the truth
            sigma = np.outer(m_cov, m_cov) * R[np.ix_(ell, ell)] / r_sky + np.diag((0.05 * cl) ** 2)
            r = cl - m
            assert emu.chi2[i, j] == pytest.approx(r @ np.linalg.solve(sigma, r), rel=1e-6, abs=1e-9)
    best = emu.best()
    assert best["chi2"] < 1e-6
    # the parabolic refinement through the neighbours of the grid minimum (spacing 0.069 in ln σ²)
    # may move the vertex by a fraction of a step where χ² is not exactly parabolic: 1 %
    assert best["sigma2"] == pytest.approx(1.0, rel=0.01) and best["rho"] == pytest.approx(0.1, rel=0.01)
    with pytest.raises(ValueError, match="degree"):
        scan.emulated(degree=5)


def _log_quadratic_moments(model, thetas, first_tag):
    # ⟨C_ℓ⟩ exactly log-quadratic in (ln σ², ln ρ) (monotonic in σ² over |ln σ²| < 5, so that
    # no other σ² gives the same spectrum), covariance ⟨C⟩⟨C⟩ᵀ ∘ R: the emulator represents it
    # exactly, so an emulator fit must reproduce the model's own χ² surface.
    x, y = np.asarray(thetas)[:, :1], np.asarray(thetas)[:, 1:]
    l = np.arange(model.lmax + 1)
    mean = np.exp(1.0 - 0.8 * np.log1p(l) + 0.3 * x - 0.03 * x**2 + (0.2 + 0.05 * l) * y + 0.04 * x * y)
    return mean, mean[:, :, None] * mean[:, None, :] * _REL_COV[: len(l), : len(l)]


_REL_COV = 0.6 * np.eye(8) + 0.4  # 100 % scatter per ℓ, correlation 0.4 between multipoles


def test_emulator_fit_of_an_exactly_emulated_model_finds_its_minimum_and_profile():
    # With the log-quadratic model above in place of backtracking (and 10⁶ realisations per point,
    # so the emulator's own error is ~1e-4 of the sky variance) the emulator fit must, started a
    # factor 2 away, converge on the noise-free sky's truth (χ² < 1e-8), and its profile-likelihood
    # intervals must equal those of an independent SciPy evaluation of
    # χ²(x, y) = rᵀΣ*⁻¹r, Σ* = a²⟨C*⟩⟨C*⟩ᵀ∘R/R_sky + diag(σ²) (Σ at the best fit, here the truth),
    # profiled by minimize_scalar, crossings by brentq: 2 % of the half-width (the fit interpolates
    # the profile linearly between 41 points across ±4σ).
    from scipy.optimize import brentq, minimize_scalar

    model = inference.SpectrumModel(nside=4, n_realisations=10**6, time=2.0, n_modes=8)
    truth, a, r_sky = np.array([0.0, np.log(0.1)]), 2e-6, 1000
    ell = np.arange(1, 8)
    m_true = _log_quadratic_moments(model, truth[None], 0)[0][0]
    cl = a * m_true[ell]
    obs = _full_sky_spectrum(ell, cl, 0.02 * cl, nside=4, sky_realisations=r_sky)
    res = inference.fit_spectrum(
        obs,
        model,
        {"sigma2": 2.0, "rho": 0.2},
        amplitude=a,
        method=EmulatorFit(design_points=5, moments=_log_quadratic_moments),
        progress=False,
    )
    assert res.converged, res.message
    assert res.chi2 < 1e-8 and len(res.history) >= 2  # the first round is centred on the start
    assert np.log([res.parameters["sigma2"], res.parameters["rho"]]) == pytest.approx(truth, abs=1e-4)
    sigma = np.outer(cl, cl) * _REL_COV[np.ix_(ell, ell)] / r_sky + np.diag((0.02 * cl) ** 2)

    def chi2(x, y):
        r = cl - a * _log_quadratic_moments(model, np.array([[x, y]]), 0)[0][0][ell]
        return r @ np.linalg.solve(sigma, r)

    for k, name in enumerate(("sigma2", "rho")):
        if k == 0:
            prof = lambda x: minimize_scalar(lambda y: chi2(x, y), bracket=(truth[1] - 0.1, truth[1] + 0.1)).fun
        else:
            prof = lambda y: minimize_scalar(lambda x: chi2(x, y), bracket=(-0.1, 0.1)).fun
        for level in ("68", "95"):
            lo, hi, closed_lo, closed_hi = res.intervals[name][level]
            d = {"68": 1.0, "95": 4.0}[level]
            ref_hi = brentq(lambda t: prof(t) - d, truth[k], truth[k] + 1.0)
            ref_lo = brentq(lambda t: prof(t) - d, truth[k] - 1.0, truth[k])
            assert closed_lo and closed_hi
            assert np.log(hi) - truth[k] == pytest.approx(ref_hi - truth[k], rel=0.02)
            assert truth[k] - np.log(lo) == pytest.approx(truth[k] - ref_lo, rel=0.02)
        assert res.log_uncertainties[name] == pytest.approx(
            0.5 * np.log(res.intervals[name]["68"][1] / res.intervals[name]["68"][0])
        )
    # the Laplace covariance is the inverse of half the exact Hessian of χ² (the Fisher matrix)
    assert np.linalg.inv(res.fisher) == pytest.approx(res.covariance, rel=1e-9)


@pytest.mark.slow
def test_emulator_joint_fit_recovers_lambda_c_and_b0_with_a_known_gradient():
    # Two noise-free spectra at 20 and 2 TeV made by the exactly emulated model at σ² = 1,
    # λ_c = 0.072 pc, B0 = 3 μG (ρ = 0.1 and 0.01) with the amplitude (r_L |∇n/n|)²: started a
    # factor 2.5 away, the joint emulator fit returns all three (1e-4 in ln), and without the
    # gradient it reports ln λ_c − ln B0 as the unconstrained direction instead of a number.
    from jaxcr import units

    model = inference.SpectrumModel(nside=4, n_realisations=10**6, time=2.0, n_modes=8)
    truth = {"sigma2": 1.0, "lambda_c_pc": 0.072, "b0_microgauss": 3.0}
    specs = []
    for e in (20.0, 2.0):
        r_l = units.larmor_radius_pc(e, truth["b0_microgauss"])
        ell = np.arange(1, 8)
        m = _log_quadratic_moments(model, np.log([[1.0, r_l / truth["lambda_c_pc"]]]), 0)[0][0]
        cl = (0.01 * r_l) ** 2 * m[ell]
        specs.append(_full_sky_spectrum(ell, cl, 0.02 * cl, nside=4, energy_tev=e, sky_realisations=1000))
    start = {"sigma2": 2.5, "lambda_c_pc": 0.18, "b0_microgauss": 7.5}
    exact = EmulatorFit(design_points=5, moments=_log_quadratic_moments)
    res = inference.fit_joint(specs, model, start, gradient_per_pc=0.01, method=exact, progress=False)
    assert res.converged, res.message
    for name, value in truth.items():
        assert np.log(res.parameters[name] / value) == pytest.approx(0.0, abs=1e-4), name
        assert np.isfinite(res.log_uncertainties[name])
    free = inference.fit_joint(specs, model, start, method=dataclasses.replace(exact, reuse=res), progress=False)
    assert any("ln lambda_c_pc" in d and "ln b0_microgauss" in d and "unconstrained" in d for d in free.degenerate)
    assert np.isinf(free.log_uncertainties["lambda_c_pc"]) and np.isinf(free.log_uncertainties["b0_microgauss"])
    # ℓ = 4..7 lie above an nside-2 model's lmax: an error, unless ell_max cuts them explicitly
    # (then the reuse is refused: the design was made with another model)
    small = dataclasses.replace(model, nside=2)
    with pytest.raises(ValueError, match=r"ℓ = \[4, 5, 6, 7\] above the model's lmax"):
        inference.fit_joint(specs[:1] * 2, small, start, method=exact, progress=False)
    with pytest.raises(ValueError, match="another model"):
        inference.fit_joint(
            specs[:1] * 2, small, start, method=dataclasses.replace(exact, reuse=res), ell_max=3, progress=False
        )
    assert inference.SpectrumModel.for_spectrum(specs[0]).nside == 4  # ℓ ≤ 7 needs lmax = 2·nside − 1 ≥ 7


def test_emulator_fit_input_errors():
    model = inference.SpectrumModel(nside=2, n_realisations=4, time=2.0, n_modes=8)
    ell = np.arange(1, 4)
    obs = _full_sky_spectrum(ell, np.ones(3), np.ones(3), nside=2)
    init = {"sigma2": 1.0, "rho": 0.1}
    with pytest.raises(TypeError, match="method"):
        inference.fit_spectrum(obs, model, init, method="emulator")
    with pytest.raises(ValueError, match="design_points"):
        inference.fit_spectrum(obs, model, init, method=EmulatorFit(design_points=2))
    with pytest.raises(ValueError, match="box"):
        inference.fit_spectrum(obs, model, init, method=EmulatorFit(box=(1.0, 0.5, 0.2)))
    with pytest.raises(ValueError, match="box"):
        inference.fit_spectrum(obs, model, init, method=EmulatorFit(box=(1.0, -0.5)))
    with pytest.raises(TypeError, match="optimizer"):
        inference.fit_spectrum(obs, model, init, method=GradientFit(optimizer="adam"))
    # a spectrum with no multipole inside the model's ℓ ≤ 2·nside − 1 = 3 is refused, not fitted on nothing
    far = _full_sky_spectrum(np.arange(10, 13), np.ones(3), np.ones(3), nside=2)
    with pytest.raises(ValueError, match="nside"):
        inference.chi2_profiled(jnp.ones(4), jnp.eye(4), far, 4)
    # a non-finite model spectrum at a design point is reported with the point, not fitted through
    thetas = np.zeros((6, 2))
    means, covs = np.ones((6, 3)), np.ones((6, 3, 3))
    means[4, 1] = np.nan
    with pytest.raises(FloatingPointError, match="design point"):
        inference.SpectrumEmulator.fit(thetas, means, covs, 4, 2, (0.0, 0.0), (1.0, 1.0))


@pytest.mark.slow
def test_emulator_injection_recovery_reduced():
    # Reduced injection-recovery of the emulator fit (the full one: experiments/fit_spectra.py; its
    # coverage over many skies: experiments/calibrate_likelihood.py --fit). Synthetic sky: the
    # mean of 64 realisations independent of the model's, σ² = 1, r_L/λ_c = 0.1, 5 % measurement
    # noise, nside 4, ΩT = 20 (λT ≈ 3), the amplitude (the CR gradient) known; the fit starts a
    # factor 2 away in both and uses 5 × 5 designs of 16 realisations. It must settle, bracket the
    # truth within its 95 % (2σ) profile intervals, and measure both to better than 30 % (68 %
    # half-widths here ≈ 22 % and 15 %; the target bound).
    model = inference.SpectrumModel(nside=4, n_realisations=16, time=20.0, n_modes=32)
    spec = _injected_sky(model)
    res = inference.fit_spectrum(
        spec, model, {"sigma2": 2.0, "rho": 0.2}, amplitude=1e-6, method=EmulatorFit(design_points=5), progress=False
    )
    assert res.converged, res.message
    for name, truth in (("sigma2", 1.0), ("rho", 0.1)):
        lo, hi, closed_lo, closed_hi = res.intervals[name]["95"]
        assert closed_lo and closed_hi and lo < truth < hi, (name, res.intervals[name])
        assert res.log_uncertainties[name] < 0.3, res.summary()
    assert res.history[0]["shift_sigma"][1] > 2  # the first round, centred on the start, had to move
    assert all(lam > 0 for lam, _, _ in res.lyapunov)
