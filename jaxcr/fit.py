"""Observatory forward model, gradient estimators that survive chaos, and optax fits.

Forward model (:class:`SpectrumModel`). For turbulence parameters θ = (ln σ², ln ρ), ρ = r_L/λ_c
(the combination that sets the spectrum's shape; λ_min/λ_c and λ_max/λ_c fixed), N_B field
realisations (fixed keys: common random numbers), every pixel of a HEALPix sky is backtracked to
ΩT = ``time``; the map δI = r(−T)·ĝ (Eq. 7, unit gradient ĝ, B0 along ``b0_direction``, both in
the observatory's equatorial frame) goes through the observatory's mask (declination band),
optional removal of the fitted ℓ ≤ L structure, and the pseudo-C_ℓ estimator (healpy ``anafast``
equivalent). The observed spectrum is modelled as

    C_ℓ^obs = a C_ℓ^sky(θ) + N + ε_ℓ,

with a = (|∇n/n| r_L)² (profiled analytically, or fixed when the gradient is known), N the
observatory's shot noise and ε_ℓ the measurement error σ_ℓ of the file. C_ℓ^sky is the spectrum
of the sky we happen to live in: one realisation of the turbulence (or the mean of R_sky
realisations for a synthetic spectrum, ``ObservedSpectrum.sky_realisations``). Its expectation is
the ensemble mean ⟨C_ℓ⟩(θ) and its scatter the cosmic variance S_ℓℓ'(θ), the ℓ-ℓ' covariance of
per-realisation spectra. Per-realisation spectra scatter by ~100 % and are correlated across ℓ
(ρ ≈ 0.3-0.7: a realisation that wanders far raises every multipole), so the fit uses the full
covariance (:func:`chi2_profiled`)

    χ² = rᵀ Σ⁻¹ r,   r = C^obs − N − a⟨C⟩,   Σ = a² S (1/R_sky + 1/N_B) + diag(σ_ℓ²),

where the 1/N_B term is the model's own sampling error (⟨C⟩ and S are estimated from the N_B
model realisations at θ; Σ is held fixed when differentiating). A diagonal χ² without the sky
variance was the reason earlier injection-recovery runs were biased by ~5σ.

Gradients (:func:`estimate_gradient`). dχ²/dθ = (∂χ²/∂⟨C⟩)·J with the deterministic tail
(⟨C⟩ → χ²) differentiated exactly and the Jacobian J = d⟨C_ℓ⟩/dθ of the chaotic part estimated
per realisation by one of:

* ``"pathwise"``: forward-mode AD through the solver. Exact for short T; grows like e^{λT}
  (see :mod:`jaxcr.chaos`) and is meaningless once λT ≫ 1.
* ``"crn"``: common-random-number central differences, step ``step`` in ln θ (default 0.05:
  O(h²) = 2.5e-3 relative bias for smooth dependence). At long T the orbits at θ ± h decorrelate
  (chaos), the per-realisation difference becomes noise of size ~C/h, and a larger step is
  better: at ΩT = 30 (nside 4, 64 realisations) the standard error of d⟨C_ℓ⟩/d ln σ² was
  0.2-0.9 ⟨C_ℓ⟩ with h = 0.05 and 0.1-0.2 ⟨C_ℓ⟩ with h = 0.2, so the fits default to h = 0.2
  (bias (ph)²/6 < 1 % for C ∝ θ^p, p ≤ 1).
* ``"spsa"``: simultaneous perturbation, J ≈ [s(θ+hΔ) − s(θ−hΔ)]/(2h) Δᵀ with Δ ∈ {±1}^P.
* ``"score"``: likelihood ratio over the random mode amplitudes. It needs amplitudes drawn from a
  θ-dependent density, so the model uses Gaussian (Rayleigh-modulus) amplitudes,
  E_n = A_n(θ)/√2 (ξ_n a_n + η_n b_n), ξ, η ~ N(0, 1), which have the same ⟨|E_n|²⟩ = A_n² as
  Eq. 10. Then ∂/∂ln σ² E[s] = E[(s − b) Σ_n (ξ_n² + η_n² − 2)/2] with a leave-one-out baseline
  b. ρ enters the dynamics (wave numbers in units of r_L), not a density, so its column is
  estimated by CRN differences; ``GradientEstimate.methods`` says which method gave which column.

Every estimate carries its standard error (from the spread over realisations) and the maximal
Lyapunov exponent λ of the model's orbits at θ (:mod:`jaxcr.chaos`): pathwise AD is meaningful
only while λT is a few; :func:`estimate_gradient` warns beyond ``PATHWISE_MAX_GROWTH``.

Fits (:func:`fit_spectrum`, :func:`fit_joint`) run an optax optimiser on ln-parameters. The
default, ``optimizer="fisher"``, is Fisher scoring: the estimated gradient preconditioned by the
Gauss-Newton Fisher matrix (with the profiled amplitudes marginalised) and applied by
``optax.chain(optax.clip_by_global_norm(max_step), optax.sgd(1))``; it converges in a few steps
where Adam needs tens. ``optimizer="adam"`` is plain ``optax.adam``.

Profile likelihood (:func:`profile_likelihood`, :class:`LikelihoodScan`): χ² of one spectrum on a
(σ², ρ) grid, no gradients involved, and :meth:`LikelihoodScan.emulated`, a smooth emulator that
pools the grid's realisations (each point's own sampling noise makes the direct surface jagged at
long T). Its Δχ² intervals are the check on the Fisher errors; experiments/calibrate_likelihood.py
measures how often they cover the truth over many synthetic skies.

Emulator fits (``fit_spectrum``/``fit_joint`` with ``method="emulator"``) turn that scan into a fit
that starts anywhere: per spectrum, a design of independent model evaluations on a box around the
current estimate, a quadratic emulator of ln⟨C_ℓ⟩(ln σ², ln ρ) through them, the emulated χ²
minimised by optax L-BFGS with exact AD gradients (the emulator is smooth: chaos is averaged out
in the design, not differentiated through), then a new box around the estimate until it settles.
The reported uncertainties are profile-likelihood intervals of the emulated χ². This is the
method to use at long backtracking times, where the gradient estimators' Jacobian noise biases
the Fisher errors (experiments/README.md); the gradient fit stays the fast choice at small λT.
"""

from __future__ import annotations

import dataclasses
import functools
import time as _time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import __version__, _checks, units
from .chaos import lyapunov_exponent
from .diffusion import mean_and_sem
from .dynamics import backtrack
from .observations import ObservedSpectrum
from .sky import declination_band_mask, pixel_directions
from .spectra import angular_power_spectrum, max_lmax
from .turbulence import PlaneWaveTurbulence, TurbulenceNoise, TurbulenceParameters, mode_amplitudes, polarisation_basis

__all__ = [
    "SpectrumModel",
    "GradientEstimate",
    "FitResult",
    "realisation_spectra",
    "estimate_gradient",
    "chi2_profiled",
    "spectrum_covariance",
    "fit_spectrum",
    "fit_joint",
    "synthetic_spectrum",
    "LikelihoodScan",
    "profile_likelihood",
]

ESTIMATORS = ("pathwise", "crn", "spsa", "score")
OPTIMIZERS = ("fisher", "adam")
METHODS = ("gradient", "emulator")
EMULATOR_BOX = (1.4, 0.9)  # half-widths (e-folds) of the design box in ln σ² and ln ρ
_AMPLITUDE_ITERATIONS = 8
PATHWISE_MAX_GROWTH = 10.0  # λT above which pathwise AD is dominated by chaos (e^{10} ≈ 2×10⁴)


@dataclasses.dataclass(frozen=True)
class SpectrumModel:
    """Settings of the forward model (all but θ). Lengths in λ_c, times in 1/Ω.

    The defaults are small enough for a CPU fit; for real data raise ``nside`` toward the
    observatory's resolution (C_ℓ is compared only for ℓ ≤ 2·nside − 1).
    """

    nside: int = 4
    n_realisations: int = 32
    time: float = 30.0
    n_modes: int = 32
    lambda_min_over_lc: float = 0.1
    lambda_max_over_lc: float = 10.0
    dt: float = 0.05
    b0_direction: tuple = (0.0, 0.0, 1.0)
    gradient_direction: tuple = (1.0, 0.0, 0.0)
    dec_min_deg: float = -90.0
    dec_max_deg: float = 90.0
    remove_ell_max: int | None = None
    gaussian_amplitudes: bool = False
    seed: int = 0

    def validate(self):
        _checks.check_power_of_two("nside", self.nside)
        _checks.check_positive_int("n_realisations", self.n_realisations)
        if self.n_realisations < 2:
            raise ValueError("n_realisations must be >= 2 (standard errors come from the spread over realisations)")
        _checks.check_positive("time", self.time)
        _checks.check_positive("dt", self.dt)
        _checks.check_less("lambda_min_over_lc", self.lambda_min_over_lc, "lambda_max_over_lc", self.lambda_max_over_lc)
        for name in ("b0_direction", "gradient_direction"):
            _checks.check_unit_vectors(name, np.asarray(getattr(self, name), dtype=float))

    def with_observatory(self, spectrum: ObservedSpectrum) -> "SpectrumModel":
        """The same model seen through a spectrum's mask and ℓ ≤ L removal."""
        return dataclasses.replace(self, dec_min_deg=spectrum.dec_min_deg, dec_max_deg=spectrum.dec_max_deg,
                                   remove_ell_max=spectrum.remove_ell_max)

    @property
    def lmax(self) -> int:
        return max_lmax(self.nside)


def _field(theta, key, model: SpectrumModel, n_modes: int):
    sigma2, rho = jnp.exp(theta[0]), jnp.exp(theta[1])
    params = TurbulenceParameters(sigma2=sigma2, coherence_length=1.0 / rho, lambda_min=model.lambda_min_over_lc / rho,
                                  lambda_max=model.lambda_max_over_lc / rho, n_modes=n_modes)
    noise = TurbulenceNoise.sample(key, n_modes)
    if not model.gaussian_amplitudes:
        return PlaneWaveTurbulence.from_parameters(params, noise, model.b0_direction), None
    xi = jax.random.normal(jax.random.fold_in(key, 7), (2, n_modes))
    a, b = polarisation_basis(noise.directions)
    amp = mode_amplitudes(params) / jnp.sqrt(2.0)
    pol = amp[:, None] * (xi[0][:, None] * a + xi[1][:, None] * b)
    field = eqx.tree_at(lambda f: f.polarisations, PlaneWaveTurbulence.from_parameters(params, noise, model.b0_direction),
                        pol)
    # d ln p/d ln σ² of the Gaussian amplitudes (A_n ∝ σ): Σ_n (ξ² + η² − 2)/2
    return field, 0.5 * jnp.sum(xi[0] ** 2 + xi[1] ** 2 - 2.0)


def _realisation_keys(model: SpectrumModel):
    """The PRNG keys of the model's N_B field realisations (the same in every function)."""
    return jax.random.split(jax.random.key(model.seed), model.n_realisations)


def realisation_spectra(theta, model: SpectrumModel, adjoint: str = "reverse"):
    """Per-realisation pseudo-C_ℓ (R, lmax+1) of the unit-gradient model sky at θ = (ln σ², ln ρ)."""
    return _spectra_at(jnp.broadcast_to(theta, (model.n_realisations, 2)), model, adjoint)


def _spectra_at(thetas, model: SpectrumModel, adjoint: str = "reverse"):
    """Spectra of realisation i at θ_i (thetas of shape (R, 2)); one backtracking run each.

    The seed is passed as traced keys, so models that differ only in ``seed`` share one compiled
    function (synthetic skies and fits do not recompile)."""
    return _spectra_compiled(thetas, _realisation_keys(model), dataclasses.replace(model, seed=0), adjoint)


@functools.partial(jax.jit, static_argnames=("model", "adjoint"))
def _spectra_compiled(thetas, keys, model: SpectrumModel, adjoint: str):
    directions = pixel_directions(model.nside)
    mask = None
    if (model.dec_min_deg, model.dec_max_deg) != (-90.0, 90.0):
        mask = declination_band_mask(model.nside, model.dec_min_deg, model.dec_max_deg)
    g = jnp.asarray(model.gradient_direction, dtype=float)

    def one(args):
        key, theta = args
        field, _ = _field(theta, key, model, model.n_modes)
        r = backtrack(field, directions, [model.time], dt=model.dt, adjoint=adjoint).positions[-1]
        return angular_power_spectrum(r @ g, mask=mask, remove_ell_max=model.remove_ell_max)

    # several realisations per vmap (≈ 2048 particles) keep the vector units busy at small nside
    batch = max(1, min(model.n_realisations, 2048 // directions.shape[0]))
    return jax.lax.map(one, (keys, thetas), batch_size=batch)


def _score_terms(theta, model):
    return jax.vmap(lambda k: _field(theta, k, model, model.n_modes)[1])(_realisation_keys(model))


def _model_lyapunov(theta, model: SpectrumModel, n_fields: int = 2, n_orbits: int = 16):
    """λ (units Ω) and its standard error for the model's orbits at θ: the first ``n_fields``
    realisations, ``n_orbits`` pixel directions each, averaged over ΩT = max(T, 30)."""
    keys = _realisation_keys(model)[:n_fields]
    fields = jax.vmap(lambda k: _field(theta, k, model, model.n_modes)[0])(keys)
    dirs = pixel_directions(model.nside)
    dirs = dirs[np.linspace(0, dirs.shape[0] - 1, min(n_orbits, dirs.shape[0])).astype(int)]
    est = lyapunov_exponent(fields, dirs, max(model.time, 30.0), dt=model.dt)
    return float(est.exponent), float(est.stderr)


def _covered(observed: ObservedSpectrum, n_ell: int):
    """The observed multipoles ℓ < n_ell (those the model spectrum has) and their row mask."""
    sel = np.asarray(observed.ell) < n_ell
    return np.asarray(observed.ell)[sel], sel


def spectrum_covariance(spectra):
    """ℓ-ℓ' covariance S of per-realisation spectra (R, L) → (L, L): the cosmic variance of one sky."""
    x = spectra - spectra.mean(0)
    return x.T @ x / (spectra.shape[0] - 1)


def _sky_covariance(cov_cl, ell, observed: ObservedSpectrum, n_model: int):
    """S (1/R_sky + 1/N_B) on the observed multipoles: the expected scatter between the data's
    sky and the model mean before the amplitude a² and the measurement errors are added."""
    return cov_cl[np.ix_(ell, ell)] * (1.0 / observed.sky_realisations + 1.0 / n_model)


def chi2_profiled(mean_cl, cov_cl, observed: ObservedSpectrum, n_model: int, amplitude=None):
    """χ² = rᵀΣ⁻¹r of C^model = a⟨C_ℓ⟩ + N against the observed ℓ (≤ model lmax); a profiled if None.

    ``mean_cl`` (L,) and ``cov_cl`` (L, L) are the mean and the per-realisation covariance
    (:func:`spectrum_covariance`) of ``n_model`` model realisations. Σ = a² S (1/R_sky + 1/N_B)
    + diag(σ_ℓ²) (module docstring). The profiled amplitude is the generalised-least-squares
    a = mᵀΣ⁻¹o / mᵀΣ⁻¹m, iterated to its fixed point because Σ depends on a (the map a ↦ a is
    a contraction: 8 iterations reach ~1e-12). Σ⁻¹ is held fixed in the derivative
    (``stop_gradient``). Returns (χ², a).
    """
    ell, sel = _covered(observed, mean_cl.shape[-1])
    sky = jax.lax.stop_gradient(_sky_covariance(cov_cl, ell, observed, n_model))
    o = jnp.asarray(observed.cl[sel]) - observed.noise_level
    meas = jnp.diag(jnp.asarray(observed.sigma[sel]) ** 2)
    return _gls_chi2(mean_cl[ell], sky, o, meas, amplitude)


def _gls_chi2(m, sky, o, meas, amplitude=None):
    """χ² and amplitude of o ≈ a m with Σ = a² sky + meas (see :func:`chi2_profiled`);
    ``sky=None``: Σ = meas, fixed, and the profiled amplitude needs no fixed-point iteration."""

    def gls_amplitude(sigma):
        w = jnp.linalg.solve(sigma, m)
        return jnp.dot(w, o) / jnp.dot(w, m)

    def covariance(a):
        return jax.lax.stop_gradient(meas if sky is None else a**2 * sky + meas)

    if amplitude is None:
        a = jax.lax.stop_gradient(gls_amplitude(meas))
        for _ in range(0 if sky is None else _AMPLITUDE_ITERATIONS):
            a = jax.lax.stop_gradient(gls_amplitude(covariance(a)))
        sigma = covariance(a)
        a = gls_amplitude(sigma)
    else:
        a = amplitude
        sigma = covariance(a)
    r = o - a * m
    return jnp.dot(r, jnp.linalg.solve(sigma, r)), a


class GradientEstimate(eqx.Module):
    """An estimate of J = d⟨C_ℓ⟩/dθ (and of dχ²/dθ when a spectrum is given), with standard errors.

    ``covariance_cl`` is the ℓ-ℓ' covariance of the per-realisation spectra (cosmic variance);
    ``lyapunov_exponent`` ± ``lyapunov_stderr`` (units Ω) the maximal Lyapunov exponent of the
    model's orbits at θ, so ``chaos_growth`` = λT says whether pathwise AD can be trusted.
    """

    theta: jax.Array
    mean_cl: jax.Array
    sem_cl: jax.Array
    covariance_cl: jax.Array
    jacobian: jax.Array  # (L, P)
    jacobian_stderr: jax.Array
    per_realisation_jacobian: jax.Array  # (R, L, P)
    methods: tuple = eqx.field(static=True)
    wall_time_s: float = eqx.field(static=True)
    lyapunov_exponent: float = eqx.field(static=True)
    lyapunov_stderr: float = eqx.field(static=True)
    time: float = eqx.field(static=True)

    @property
    def n_realisations(self) -> int:
        return self.per_realisation_jacobian.shape[0]

    @property
    def chaos_growth(self) -> float:
        """λT: pathwise derivatives carry a factor ~e^{λT}."""
        return self.lyapunov_exponent * self.time

    def loss_gradient(self, observed: ObservedSpectrum, amplitude=None):
        """(χ², dχ²/dθ, its standard error, a): the exact tail gradient times the estimated J."""
        (chi2, a), dm = jax.value_and_grad(
            lambda m: chi2_profiled(m, self.covariance_cl, observed, self.n_realisations, amplitude), has_aux=True
        )(self.mean_cl)
        per = jnp.einsum("l,rlp->rp", dm, self.per_realisation_jacobian)
        g, g_se = mean_and_sem(per)
        return chi2, g, g_se, a


def estimate_gradient(theta, model: SpectrumModel, method: str = "crn", *, step: float = 0.05, seed: int = 1,
                      lyapunov: bool = True) -> GradientEstimate:
    """Estimate ⟨C_ℓ⟩(θ), its SE and the Jacobian d⟨C_ℓ⟩/dθ by ``method`` (module docstring).

    With ``lyapunov`` (default) the maximal Lyapunov exponent of the model's orbits at θ is
    measured too and reported beside the estimate; a pathwise estimate with λT above
    ``PATHWISE_MAX_GROWTH`` raises a warning that it is dominated by chaos.
    """
    if method not in ESTIMATORS:
        raise ValueError(f"method must be one of {ESTIMATORS}; got {method!r}")
    model.validate()
    _checks.check_positive("step", step)
    theta = jnp.asarray(theta, dtype=float)
    if theta.shape != (2,):
        raise ValueError(f"theta must be (ln sigma2, ln rho), shape (2,); got {theta.shape}")
    _checks.check_finite("theta", theta)
    if method == "score" and not model.gaussian_amplitudes:
        raise ValueError("the score-function estimator needs SpectrumModel(gaussian_amplitudes=True)")
    t0 = _time.perf_counter()
    lam, lam_se = _model_lyapunov(theta, model) if lyapunov else (float("nan"), float("nan"))
    if method == "pathwise" and lam * model.time > PATHWISE_MAX_GROWTH:
        warnings.warn(f"pathwise gradient at λT = {lam * model.time:.1f} (λ = {lam:.3g} Ω, ΩT = {model.time:g}): "
                      f"chaos amplifies it by ~e^{{λT}} = {np.exp(lam * model.time):.2g}; use 'crn', 'spsa' or 'score'",
                      stacklevel=2)
    spectra = lambda th: realisation_spectra(th, model)  # noqa: E731
    s0 = spectra(theta)  # (R, L)
    R, P = s0.shape[0], 2
    if method == "pathwise":
        per = jax.jacfwd(lambda th: realisation_spectra(th, model, adjoint="forward"))(theta)  # (R, L, P)
        methods = ("pathwise", "pathwise")
    elif method == "spsa":
        delta = jax.random.rademacher(jax.random.key(seed), (R, P)).astype(float)
        diff = _spectra_at(theta + step * delta, model) - _spectra_at(theta - step * delta, model)
        per = (diff / (2 * step))[:, :, None] * delta[:, None, :]
        methods = ("spsa", "spsa")
    else:
        cols = []
        for j in range(P):
            e = jnp.zeros(P).at[j].set(step)
            cols.append((spectra(theta + e) - spectra(theta - e)) / (2 * step))
        per = jnp.stack(cols, axis=-1)
        methods = ("crn", "crn")
        if method == "score":
            score = _score_terms(theta, model)  # (R,)
            loo = (s0.sum(0)[None] - s0) / (R - 1)  # leave-one-out baseline
            per = per.at[:, :, 0].set((s0 - loo) * score[:, None])
            methods = ("score", "crn")
    per = np.asarray(per)
    if not np.all(np.isfinite(per)):
        raise FloatingPointError(f"non-finite Jacobian from the {method} estimator (pathwise derivatives overflow "
                                 f"when λT is large, here λT = {lam * model.time:.1f}: use 'crn', 'spsa' or 'score')")
    mean, sem = mean_and_sem(s0)
    jac, jac_se = mean_and_sem(jnp.asarray(per))
    return GradientEstimate(theta=theta, mean_cl=mean, sem_cl=sem, covariance_cl=spectrum_covariance(s0),
                            jacobian=jac, jacobian_stderr=jac_se, per_realisation_jacobian=jnp.asarray(per),
                            methods=methods, wall_time_s=_time.perf_counter() - t0, lyapunov_exponent=lam,
                            lyapunov_stderr=lam_se, time=float(model.time))


# --------------------------------------------------------------------------------------------
# Fits
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FitResult:
    """Best fit, uncertainties and diagnostics.

    ``parameters`` are the fitted physical values; ``log_uncertainties`` are 1σ errors of their
    natural logarithms (≈ relative errors) from the Fisher matrix (Gauss-Newton curvature of χ²
    with the estimated Jacobian and the full covariance Σ, the profiled amplitudes marginalised,
    the Jacobian's own noise subtracted; see :func:`_fisher`);
    ``degenerate`` lists parameter combinations the data do not constrain (then the corresponding
    values are not meaningful and are reported as such, not hidden). ``history`` has one entry per
    step (χ², parameters, gradient ± SE, Lyapunov exponent λ and λT of each spectrum's model).
    ``model_spectra`` holds, per spectrum, (ℓ, a⟨C_ℓ⟩, expected data-model scatter
    a·sqrt(diag S (1/R_sky + 1/N_B))) at the best fit, without the noise level N.
    """

    parameters: dict
    log_uncertainties: dict
    covariance: np.ndarray
    names: tuple
    amplitudes: list
    chi2: float
    n_data: int
    converged: bool
    message: str
    degenerate: list
    history: list
    estimator: str
    wall_time_s: float
    model_spectra: list  # (ell, a⟨C_ℓ⟩, expected scatter) per spectrum at the best fit
    optimizer: str = "fisher"
    lyapunov: list = dataclasses.field(default_factory=list)  # (λ, SE, λT) per spectrum at the best fit
    fisher: np.ndarray | None = None  # marginal Fisher matrix of the ln-parameters (Jacobian noise removed)
    intervals: dict | None = None  # emulator fits: {name: {"68"|"95": (low, high, closed_low, closed_high)}}
    design: list | None = None  # emulator fits: the design points evaluated per spectrum (for ``reuse``)

    def constrained_directions(self):
        """[(unit vector in ln-parameter space, 1σ along it)] for every direction the data
        constrain (positive Fisher eigenvalue): with a degeneracy, what the fit *does* measure."""
        vals, vecs, null = _fisher_eigen(self.fisher)
        return [(vecs[:, i], float(1 / np.sqrt(vals[i]))) for i in np.flatnonzero(~null)]

    def summary(self) -> str:
        chaos = "; ".join(f"λT = {g:.1f}" for _, _, g in self.lyapunov)
        how = "emulator, optax L-BFGS" if self.estimator == "emulator" else f"{self.optimizer}, {self.estimator} gradients"
        lines = [f"fit ({how}{', ' + chaos if chaos else ''}): "
                 f"χ² = {self.chi2:.3g} for {self.n_data} points, "
                 f"{'converged' if self.converged else 'NOT converged'} ({self.message}), {self.wall_time_s:.1f} s"]
        for name in self.names:
            line = f"  {name} = {self.parameters[name]:.4g} (±{100 * self.log_uncertainties[name]:.1f} %)"
            for level, (lo, hi, closed_lo, closed_hi) in (self.intervals or {}).get(name, {}).items():
                line += f", {level} % [{lo:.4g}{'' if closed_lo else ' open'}, {hi:.4g}{'' if closed_hi else ' open'}]"
            lines.append(line)
        for d in self.degenerate:
            lines.append(f"  DEGENERATE: {d}")
        return "\n".join(lines)


def _fisher(blocks, n_phi, debias: bool = False):
    """Gauss-Newton Fisher matrix of the ln-parameters with the profiled amplitudes marginalised.

    Each block's rows ∂μ/∂(φ, ln a) are whitened with the Cholesky factor of its covariance Σ;
    F = DᵀD, and the amplitudes are marginalised by the Schur complement.

    With ``debias`` the noise of the estimated Jacobian is subtracted: the mean over N_B
    realisations J̄ = J + ε gives E[J̄ᵀΣ⁻¹J̄] = JᵀΣ⁻¹J + E[εᵀΣ⁻¹ε], and E[εᵀΣ⁻¹ε] is estimated from
    the spread of the per-realisation Jacobians (whitened), divided by N_B. Without it the
    Fisher errors come out too small wherever the Jacobian is noisy (long T, chaos); directions
    in which the noise is as large as the signal become unconstrained, as they should.
    """
    n_amp = sum(1 for b in blocks if b["profiled"])
    rows, k, noise = [], n_phi, np.zeros((n_phi, n_phi))
    for b in blocks:
        d = np.zeros((b["m"].shape[0], n_phi + n_amp))
        d[:, :n_phi] = b["D_phi"]
        if b["profiled"]:
            d[:, k] = b["a"] * b["m"]  # ∂μ/∂ln a
            k += 1
        chol = np.linalg.cholesky(b["cov"])
        rows.append(np.linalg.solve(chol, d))
        if debias:
            per = b["D_phi_per"]  # (N_B, n_ell, n_phi): per-realisation ∂(a C_ℓ)/∂φ
            dev = np.linalg.solve(chol[None], per - per.mean(0))
            noise += np.einsum("rlp,rlq->pq", dev, dev) / (per.shape[0] * (per.shape[0] - 1))
    D = np.concatenate(rows)
    F = D.T @ D
    F[:n_phi, :n_phi] -= noise
    Fm = F[:n_phi, :n_phi]
    if n_amp:  # Schur complement: marginalise the amplitudes
        Fm = Fm - F[:n_phi, n_phi:] @ np.linalg.solve(F[n_phi:, n_phi:], F[n_phi:, :n_phi])
    return 0.5 * (Fm + Fm.T)


def _constrained_inverse(fisher):
    """Inverse of F on its constrained subspace, and the null directions (eigenvalue ≤ 1e-9 of
    the largest |eigenvalue|) along which the data say nothing. A debiased F can have negative
    eigenvalues (Jacobian noise larger than its signal): those directions are null too, and they
    set the scale, so an exactly-zero direction is never mistaken for a constrained one."""
    vals, vecs, null = _fisher_eigen(fisher)
    return (vecs[:, ~null] / vals[~null]) @ vecs[:, ~null].T, vecs[:, null].T


def _fisher_eigen(fisher):
    """Eigenvalues, eigenvectors and the null mask of a Fisher matrix (rule in
    :func:`_constrained_inverse`)."""
    vals, vecs = np.linalg.eigh(fisher)
    return vals, vecs, vals <= 1e-9 * max(np.abs(vals).max(), 1e-300)


def _fisher_covariance(fisher):
    """(covariance, null_directions): F⁻¹ on the constrained subspace, infinite variance for every
    parameter involved in a null direction."""
    cov, null = _constrained_inverse(fisher)
    for v in null:
        involved = np.abs(v) > 0.05
        cov = np.where(np.outer(involved, involved), np.inf, cov)
    return cov, null


def _fisher_step(fisher, grad):
    """Newton step of χ² with the Gauss-Newton Hessian 2F, δ = −(2F)⁺ g (zero along null
    directions), and its length in standard deviations, sqrt(δᵀFδ)."""
    inv, _ = _constrained_inverse(fisher)
    step = -0.5 * inv @ np.asarray(grad)
    return step, float(np.sqrt(max(step @ fisher @ step, 0.0)))


def _degenerate(cov, null_directions, names, threshold=1.0):
    """Parameter combinations the data do not constrain: Fisher null directions, and directions
    whose 1σ width exceeds ``threshold`` e-folds."""

    def combo(vec):
        vec = vec / np.max(np.abs(vec))
        return " ".join(f"{c:+.2f}·ln {n}" for c, n in zip(vec, names) if abs(c) > 0.05)

    out = [f"{combo(v)} is unconstrained (null direction of the Fisher matrix)" for v in null_directions]
    finite = np.where(np.isfinite(cov), cov, 0.0)
    vals, vecs = np.linalg.eigh(finite)
    for v, vec in zip(vals, vecs.T):
        if np.sqrt(max(v, 0)) > threshold:
            out.append(f"{combo(vec)} is poorly constrained (1σ = {np.sqrt(v):.3g} e-folds)")
    return out


def _make_optimizer(optimizer: str, learning_rate, max_step: float):
    if optimizer == "fisher":
        lr = 1.0 if learning_rate is None else learning_rate
        return optax.chain(optax.clip_by_global_norm(max_step), optax.sgd(lr))
    return optax.adam(0.1 if learning_rate is None else learning_rate)


def _run_fit(problem, phi0, names, to_physical, *, estimator, optimizer, learning_rate, max_step, max_steps, tol,
             patience, n_average, progress, step):
    from tqdm.auto import tqdm

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {optimizer!r}")
    _checks.check_positive_int("max_steps", max_steps)
    _checks.check_positive_int("n_average", n_average)
    _checks.check_positive("max_step", max_step)
    t0 = _time.perf_counter()
    phi = jnp.asarray(phi0, dtype=float)
    opt = _make_optimizer(optimizer, learning_rate, max_step)
    state = opt.init(phi)
    history, best, still, window = [], None, 0, []
    converged, message = False, f"max_steps={max_steps} reached"

    def evaluate(phi):
        total, grad, var, blocks, chaos = 0.0, jnp.zeros_like(phi), jnp.zeros_like(phi), [], []
        for observed, model, theta_fn, amp_fn in problem:
            theta, dtheta = theta_fn(phi), jax.jacfwd(theta_fn)(phi)
            est = estimate_gradient(theta, model, estimator, step=step)
            amp = None if amp_fn is None else amp_fn(phi)
            chi2, g, g_se, a = est.loss_gradient(observed, amp)
            total += float(chi2)
            grad += g @ dtheta
            if amp is not None:  # the fixed amplitude depends on φ (through r_L): exact AD of that path
                grad += jax.grad(lambda p: chi2_profiled(est.mean_cl, est.covariance_cl, observed, est.n_realisations,
                                                         amp_fn(p))[0])(phi)
            var += (g_se @ jnp.abs(dtheta)) ** 2
            ell, sel = _covered(observed, model.lmax + 1)
            a = float(a)
            sky = np.asarray(_sky_covariance(est.covariance_cl, ell, observed, est.n_realisations))
            m = np.asarray(est.mean_cl)[ell]
            d_per = a * np.asarray(est.per_realisation_jacobian)[:, ell] @ np.asarray(dtheta)
            d_phi = d_per.mean(0)  # ∂(a⟨C⟩)/∂φ
            if amp is not None:
                d_phi = d_phi + np.outer(m, np.asarray(jax.grad(amp_fn)(phi)))
            blocks.append(dict(m=m, D_phi=d_phi, D_phi_per=d_per, a=a, profiled=amp is None, ell=ell,
                               cov=a**2 * sky + np.diag(np.asarray(observed.sigma[sel]) ** 2),
                               scatter=a * np.sqrt(np.diag(sky))))
            chaos.append((est.lyapunov_exponent, est.lyapunov_stderr, est.chaos_growth))
        return dict(chi2=total, grad=grad, grad_se=jnp.sqrt(var), blocks=blocks, chaos=chaos,
                    fisher=_fisher(blocks, len(names)), fisher_debiased=_fisher(blocks, len(names), debias=True),
                    phi=phi)

    def record(it, ev, newton_sigma):
        history.append(dict(step=it, chi2=ev["chi2"], **{n: float(v) for n, v in zip(names, to_physical(ev["phi"]))},
                            gradient=np.asarray(ev["grad"]).tolist(), gradient_stderr=np.asarray(ev["grad_se"]).tolist(),
                            newton_step_sigma=newton_sigma, averaging=bool(window),
                            lyapunov=[c[0] for c in ev["chaos"]], lyapunov_growth=[c[2] for c in ev["chaos"]]))

    bar = tqdm(total=max_steps, disable=not progress, desc=f"fit ({optimizer})", unit="step")
    for it in range(max_steps):
        ev = evaluate(phi)
        newton, newton_sigma = _fisher_step(ev["fisher"], ev["grad"])
        record(it, ev, newton_sigma)
        bar.set_postfix_str(f"χ²={ev['chi2']:.4g}, step {newton_sigma:.2f}σ, λT={max(c[2] for c in ev['chaos']):.1f}")
        bar.update(1)
        if optimizer == "fisher":
            # Burn-in until the Newton step is below 1σ, then average n_average iterates: each
            # iterate carries fresh model sampling noise (chaos decorrelates the model at nearby θ),
            # so the mean of the window is steadier than any single point.
            if window or newton_sigma < 1.0:
                window.append(ev)
            if len(window) >= n_average:
                converged = True
                message = f"mean of {len(window)} Fisher-scoring iterates after the step fell below 1σ"
                break
        else:
            if best is None or ev["chi2"] < best["chi2"] - tol * max(best["chi2"], 1.0):
                best, still = ev, 0
            else:
                still += 1
                if still >= patience:
                    converged, message = True, f"χ² stopped improving by > {tol:g} (relative) for {patience} steps"
                    break
        direction = -newton if optimizer == "fisher" else ev["grad"]  # optax's sgd/adam move against it
        updates, state = opt.update(jnp.asarray(direction), state, phi)
        phi = optax.apply_updates(phi, updates)
    bar.close()
    if optimizer == "fisher":
        if not window:  # never settled: report the last iterate, flagged as not converged
            window = [ev]
        final = evaluate(jnp.mean(jnp.stack([w["phi"] for w in window]), axis=0))
        record(len(history), final, _fisher_step(final["fisher"], final["grad"])[1])
        fisher = np.mean([w["fisher_debiased"] for w in window + [final]], axis=0)
    else:
        final, fisher = best, best["fisher_debiased"]
    cov, null = _fisher_covariance(fisher)
    blocks = final["blocks"]
    return FitResult(
        parameters=dict(zip(names, (float(v) for v in to_physical(final["phi"])))),
        log_uncertainties=dict(zip(names, (float(np.sqrt(c)) if c >= 0 else float("inf") for c in np.diag(cov)))),
        covariance=cov, names=tuple(names), amplitudes=[b["a"] for b in blocks], chi2=final["chi2"],
        n_data=int(sum(len(b["m"]) for b in blocks)), converged=converged, message=message,
        degenerate=_degenerate(cov, null, names), history=history, estimator=estimator,
        wall_time_s=_time.perf_counter() - t0,
        model_spectra=[(b["ell"], b["a"] * b["m"], b["scatter"]) for b in blocks],
        optimizer=optimizer, lyapunov=final["chaos"], fisher=fisher,
    )


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    return method


def _check_init(init, names):
    for n in names:
        if n not in init:
            raise ValueError(f"init must give {', '.join(names)}; missing {n!r}")
        _checks.check_positive(f"init[{n!r}]", init[n])


_FIT_OPTIONS_DOC = """
    Options: ``estimator`` (one of ``ESTIMATORS``; default "crn"), ``optimizer`` ("fisher":
    Fisher scoring through optax, the default; "adam"), ``learning_rate`` (default 1 for fisher,
    0.1 for adam), ``max_step`` (largest step in ln-parameters for fisher, default 1 e-fold),
    ``max_steps``; fisher: once the proposed step is below 1σ, the mean of the next ``n_average``
    iterates (default 4) is the estimate and the Fisher matrix is averaged over them (the model's
    sampling noise and the Jacobian noise average down); adam: stops when χ² has not improved by
    ``tol`` (relative) for ``patience`` steps and reports the best point. ``step``: CRN/SPSA step
    in ln θ (default 0.2; see the module docstring); ``progress``: tqdm bar.

    ``method="emulator"`` replaces the gradient steps by fits on a smooth emulator of the model
    (no gradient estimator, no Jacobian noise): each round backtracks ``design_points`` ×
    ``design_points`` independent sets of N_B realisations on a box of half-widths ``box``
    (e-folds of σ² and ρ; default ±1.4, ±0.9, the box whose coverage
    experiments/calibrate_likelihood.py measured) centred on the current estimate (the first on
    ``init``), per spectrum; fits ln⟨C_ℓ⟩ by a quadratic in (ln σ², ln ρ) to the design points
    inside the box (those of earlier rounds included); minimises the emulated χ² (Σ fixed at the
    best fit) with optax L-BFGS, exact gradients by AD through the emulator; and recentres, until
    the estimate lies within 1σ of the box centre and inside the inner 75 % of the box, at most
    ``max_rounds`` rounds. Uncertainties: the profile likelihood of each parameter (Δχ² = 1 and
    4; ``FitResult.intervals``; ``log_uncertainties`` is half the 68 % width in ln, infinite if an
    end does not close inside the box) and the Laplace covariance (exact Hessian of the emulated
    χ²). ``reuse`` pools the design points of an earlier emulator fit of the same spectra.
    Cost: design_points² · N_B realisations per spectrum and round.
"""


def fit_spectrum(observed: ObservedSpectrum, model: SpectrumModel, init: dict, *, amplitude: float | None = None,
                 estimator: str = "crn", optimizer: str = "fisher", learning_rate: float | None = None, max_step: float = 1.0,
                 max_steps: int = 30, tol: float = 1e-3, patience: int = 5, n_average: int = 4,
                 step: float = 0.2, progress: bool = True, method: str = "gradient", design_points: int = 9,
                 box=EMULATOR_BOX, max_rounds: int = 3, reuse: FitResult | None = None) -> FitResult:
    """Fit σ² and ρ = r_L/λ_c to one spectrum.

    ``init`` = {"sigma2": ..., "rho": ...}. The amplitude a = (r_L |∇n/n|)² is profiled unless
    ``amplitude`` is given (a known CR gradient). With a profiled amplitude only the *shape* of
    the spectrum informs the fit, and its dependence on σ² is weak against the sky-to-sky
    variance: expect σ² to be reported as poorly constrained (experiments/README.md).
    Optimises ln σ², ln ρ with optax using the chosen gradient estimator. The field realisations
    are fixed (common random numbers), so the objective is a deterministic sample-average
    approximation.
    """
    names = ("sigma2", "rho")
    _check_init(init, names)
    model.validate()
    amp_fn = None
    if amplitude is not None:
        _checks.check_positive("amplitude", amplitude)
        amp_fn = lambda p: jnp.asarray(float(amplitude))  # noqa: E731
    problem = [(observed, model.with_observatory(observed), lambda p: p, amp_fn)]
    phi0 = jnp.log(jnp.array([init["sigma2"], init["rho"]], dtype=float))
    if _check_method(method) == "emulator":
        return _run_emulator_fit(problem, phi0, names, (0, 1), box=box, design_points=design_points,
                                 max_rounds=max_rounds, reuse=reuse, progress=progress)
    return _run_fit(problem, phi0, names, jnp.exp, estimator=estimator, optimizer=optimizer,
                    learning_rate=learning_rate, max_step=max_step, max_steps=max_steps, tol=tol, patience=patience,
                    n_average=n_average, progress=progress, step=step)


def fit_joint(spectra: list, model: SpectrumModel, init: dict, *, gradient_per_pc: float | None = None,
              charge: float = 1.0, estimator: str = "crn", optimizer: str = "fisher",
              learning_rate: float | None = None, max_step: float = 1.0, max_steps: int = 30, tol: float = 1e-3,
              patience: int = 5, n_average: int = 4, step: float = 0.2, progress: bool = True,
              method: str = "gradient", design_points: int = 9, box=EMULATOR_BOX, max_rounds: int = 3,
              reuse: FitResult | None = None) -> FitResult:
    """Joint fit of spectra at several energies with shared σ², λ_c (pc) and B0 (μG).

    Each spectrum k has ρ_k = r_L(E_k, B0)/λ_c with r_L ∝ E/(Z B0) (:mod:`jaxcr.units`). The
    spectral shapes fix only the ρ_k, i.e. the product λ_c·B0; λ_c and B0 separate only through
    the amplitude a_k = (r_L,k |∇n/n|)², so pass ``gradient_per_pc`` = |∇n/n| (1/pc) if it is known.
    Without it the amplitudes are profiled, only the product λ_c·B0 is constrained, and the fit
    reports the direction ln λ_c − ln B0 as unconstrained (infinite uncertainties).
    """
    names = ("sigma2", "lambda_c_pc", "b0_microgauss")
    _check_init(init, names)
    if len(spectra) < 1:
        raise ValueError("fit_joint needs at least one spectrum")
    if gradient_per_pc is not None:
        _checks.check_positive("gradient_per_pc", gradient_per_pc)
    model.validate()
    problem = []
    for spec in spectra:
        e = float(spec.energy_tev)

        def theta_fn(p, e=e):
            r_l = units.larmor_radius_pc(e, jnp.exp(p[2]), charge)
            return jnp.stack([p[0], jnp.log(r_l) - p[1]])

        amp_fn = None
        if gradient_per_pc is not None:
            amp_fn = lambda p, e=e: (gradient_per_pc * units.larmor_radius_pc(e, jnp.exp(p[2]), charge)) ** 2  # noqa: E731
        problem.append((spec, model.with_observatory(spec), theta_fn, amp_fn))
    phi0 = jnp.log(jnp.array([init[n] for n in names], dtype=float))
    if _check_method(method) == "emulator":
        return _run_emulator_fit(problem, phi0, names, (0, 1, 1), box=box,
                                 design_points=design_points, max_rounds=max_rounds, reuse=reuse, progress=progress)
    return _run_fit(problem, phi0, names, jnp.exp, estimator=estimator, optimizer=optimizer,
                    learning_rate=learning_rate, max_step=max_step, max_steps=max_steps, tol=tol, patience=patience,
                    n_average=n_average, progress=progress, step=step)


fit_spectrum.__doc__ += _FIT_OPTIONS_DOC
fit_joint.__doc__ += _FIT_OPTIONS_DOC


def synthetic_spectrum(theta, model: SpectrumModel, *, observatory: str, energy_tev: float, amplitude: float,
                       noise_level: float, relative_error: float = 0.05, sky_realisations: int | None = None,
                       seed: int = 12345, ells=None, dec_min_deg: float = -90.0, dec_max_deg: float = 90.0,
                       remove_ell_max: int | None = None) -> ObservedSpectrum:
    """A synthetic observed spectrum made by jaxcr at known θ (labelled ``synthetic``).

    The "sky" is the mean spectrum of ``sky_realisations`` field realisations (default: the
    model's N_B) drawn from ``seed``, independent of the fit's, times ``amplitude``, plus
    ``noise_level``; the measurement error σ_ℓ = relative_error·C_ℓ scatters the values
    (Gaussian). The sky-to-sky variance is not in σ_ℓ: the file records ``sky_realisations`` and
    the fit's likelihood adds it (module docstring).
    """
    _checks.check_positive("relative_error", relative_error)
    n_sky = model.n_realisations if sky_realisations is None else _checks.check_positive_int("sky_realisations",
                                                                                                sky_realisations)
    sky_model = dataclasses.replace(model, seed=seed, n_realisations=max(n_sky, 2), dec_min_deg=dec_min_deg,
                                    dec_max_deg=dec_max_deg, remove_ell_max=remove_ell_max)
    sky_model.validate()
    s = np.asarray(realisation_spectra(jnp.asarray(theta, dtype=float), sky_model))[:n_sky]
    ell = np.arange(1 if remove_ell_max is None else remove_ell_max + 1, model.lmax + 1) if ells is None else np.asarray(ells)
    cl = amplitude * s.mean(0)[ell] + noise_level
    sigma = relative_error * cl
    rng = np.random.default_rng(seed)
    return ObservedSpectrum(ell=ell, cl=cl + rng.normal(size=cl.shape) * sigma, sigma=sigma, observatory=observatory,
                            energy_tev=energy_tev, noise_level=noise_level, dec_min_deg=dec_min_deg,
                            dec_max_deg=dec_max_deg, nside=model.nside, remove_ell_max=remove_ell_max,
                            sky_realisations=n_sky, synthetic=True,
                            source=f"jaxcr {__version__} synthetic, theta={list(map(float, theta))}, "
                                   f"seed={seed}, mean of {n_sky} sky realisations")


# --------------------------------------------------------------------------------------------
# Emulator of the model: a smooth ⟨C_ℓ⟩(θ) and S(θ) pooled over independent design points
# --------------------------------------------------------------------------------------------


def _poly_features(z, degree: int, xp=np):
    """Monomials u^i v^j (i + j ≤ degree) of box coordinates z = (u, v), shape (..., n_coef)."""
    u, v = z[..., 0], z[..., 1]
    return xp.stack([u**i * v**j for i in range(degree + 1) for j in range(degree + 1 - i)], -1)


class _SpectrumEmulator(eqx.Module):
    """ln⟨C_ℓ⟩ as a polynomial in θ = (ln σ², ln ρ) fitted to independent design points.

    At long backtracking times the model at neighbouring θ is decorrelated by chaos, so each
    design point carries its own sampling noise; the emulator pools them. Per multipole,
    ln⟨C_ℓ⟩ is fitted by a polynomial of ``degree`` in the box coordinates z = (θ − centre)/scale
    (least squares; standard errors from the pooled relative variance), and the cosmic variance
    is modelled as S(θ) = ⟨C⟩⟨C⟩ᵀ ∘ R̄ with R̄ the relative covariance S/(⟨C⟩⟨C⟩ᵀ) averaged over
    the points (assumes the relative scatter varies little across the box). The emulator's own
    error in ln⟨C⟩ at θ is h(θ)·D R̄ D/N_B, correlated across ℓ like the realisations are (a
    far-wandering realisation raises every ℓ), with h = fᵀ(FᵀF)⁻¹f the leverage of θ and D the
    reduced-χ² inflation of the polynomial fit where that exceeds 1.
    """

    centre: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (n_coef, L')
    ftf_inv: np.ndarray  # (n_coef, n_coef)
    rel: np.ndarray  # (L', L') pooled relative covariance of one realisation
    rel_emu: np.ndarray  # (L', L') the emulator's error per unit leverage
    reduced_chi2: np.ndarray  # (L',) of the polynomial fit
    degree: int = eqx.field(static=True)

    @classmethod
    def fit(cls, thetas, means, covs, n_realisations: int, degree: int, centre, scale) -> "_SpectrumEmulator":
        """From per-point model means (K, L') and covariances (K, L', L') of ``n_realisations``
        realisations each at ``thetas`` (K, 2)."""
        means, covs = np.asarray(means), np.asarray(covs)
        bad = ~(np.all(np.isfinite(means), axis=1) & np.all(np.isfinite(covs), axis=(1, 2)))
        if bad.any():
            raise FloatingPointError(f"non-finite model spectra at the design point (ln σ², ln ρ) = "
                                     f"{np.round(np.asarray(thetas)[np.argmax(bad)], 3).tolist()}: check the model "
                                     "settings (dt, time) there")
        if np.any(means <= 0):
            raise ValueError("the emulator needs positive model spectra at every design point")
        centre, scale = np.asarray(centre, dtype=float), np.asarray(scale, dtype=float)
        F = _poly_features((np.asarray(thetas) - centre) / scale, degree)  # (K, n_coef)
        if F.shape[0] < F.shape[1]:
            raise ValueError(f"a degree-{degree} emulator needs at least {F.shape[1]} design points; got {F.shape[0]}")
        rel = np.mean(covs / (means[:, :, None] * means[:, None, :]), axis=0)
        # SE² of ln⟨C_ℓ⟩ from the pooled relative variance, the same at every point: weights from
        # each point's own sample variance would be biased, since for these skewed spectra a high
        # mean comes with a high variance (a far-wandering realisation) and would be down-weighted.
        var_log = np.diag(rel) / n_realisations
        log_m = np.log(means) + var_log / 2  # E[ln mean] ≈ ln⟨C⟩ − var/2 (delta method)
        # Every ℓ has the same design and uniform weights, so one least-squares solve serves all.
        ftf_inv = np.linalg.inv(F.T @ F)
        coef = ftf_inv @ F.T @ log_m
        resid = log_m - F @ coef
        red = np.sum(resid**2, 0) / var_log / max(len(F) - F.shape[1], 1)
        inflate = np.sqrt(np.maximum(red, 1.0))
        return cls(centre=centre, scale=scale, degree=degree, coef=coef, ftf_inv=ftf_inv, rel=rel,
                   rel_emu=inflate[:, None] * rel * inflate[None, :] / n_realisations, reduced_chi2=np.array(red))

    def box_coordinates(self, theta):
        return (theta - self.centre) / self.scale

    def mean(self, theta):
        """Emulated ⟨C_ℓ⟩ at θ (differentiable in θ)."""
        return jnp.exp(_poly_features(self.box_coordinates(theta), self.degree, jnp) @ self.coef)

    def sky_covariance(self, theta, sky_realisations: int):
        """⟨C⟩⟨C⟩ᵀ ∘ (R̄/R_sky + h(θ) D R̄ D/N_B): the scatter of a sky of ``sky_realisations``
        about the emulated mean, the emulator's own error included (unit amplitude)."""
        f = _poly_features(self.box_coordinates(theta), self.degree, jnp)
        m = self.mean(theta)
        return m[:, None] * m[None, :] * (self.rel / sky_realisations + (f @ self.ftf_inv @ f) * self.rel_emu)


def _fixed_sigma_chi2(m, o, sigma, amplitude=None):
    """χ² and amplitude of o ≈ a m with the covariance Σ held fixed (absolute units)."""
    return _gls_chi2(m, None, o, sigma, amplitude)


def _model_moments(model: SpectrumModel, thetas, first_tag: int):
    """Mean (K, L) and per-realisation covariance (K, L, L) of the model at each θ of ``thetas``;
    point i draws its own N_B realisations, keys folded from the model seed and ``first_tag + i``
    (independent points for the emulator; the same tags give the same realisations)."""
    means, covs = [], []
    static = dataclasses.replace(model, seed=0)
    for i, theta in enumerate(np.asarray(thetas, dtype=float)):
        keys = jax.random.split(jax.random.fold_in(jax.random.key(model.seed), first_tag + i), model.n_realisations)
        spectra = _spectra_compiled(jnp.broadcast_to(jnp.asarray(theta), (model.n_realisations, 2)), keys, static,
                                    "reverse")
        means.append(np.asarray(spectra.mean(0)))
        covs.append(np.asarray(spectrum_covariance(spectra)))
    return np.array(means), np.array(covs)


# --------------------------------------------------------------------------------------------
# Fits on the emulator (method="emulator")
# --------------------------------------------------------------------------------------------

_BARRIER = 1e3  # χ² penalty per (|z| − 1)² outside the design box: the emulator does not extrapolate
_TAG_STRIDE = 1_000_000  # realisation tags of spectrum k start at 1 + k·_TAG_STRIDE


def _lbfgs_minimise(f, x0, max_steps: int = 300, tol: float = 1e-8):
    """Minimise f from x0 with optax L-BFGS (zoom line search) until |∇f| < tol; jit/vmap-able."""
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(f)

    def step(carry):
        x, state = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=f)
        return optax.apply_updates(x, updates), state

    def going(carry):
        _, state = carry
        count = optax.tree_utils.tree_get(state, "count")
        grad = optax.tree_utils.tree_get(state, "grad")
        return (count == 0) | ((count < max_steps) & (optax.tree_utils.tree_norm(grad) >= tol))

    return jax.lax.while_loop(going, step, (x0, opt.init(x0)))[0]


def _box_grid(centre, halfwidth, n: int):
    """n^P points filling centre ± halfwidth (P = len(centre)), shape (n^P, P)."""
    axes = [c + h * np.linspace(-1.0, 1.0, n) for c, h in zip(centre, halfwidth)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))


class _EmulatedLikelihood(eqx.Module):
    """χ²(φ) of all spectra on their emulators, with the data covariances Σ*_k held fixed.

    A Module (emulators and data as array leaves, the spectra's θ(φ) and amplitude maps static),
    so the jitted minimiser and profiles below compile once per fit, not once per round."""

    emulators: list
    observed: list  # (C^obs − N, diag(σ_ℓ²)) per spectrum
    ells: tuple = eqx.field(static=True)
    sky_realisations: tuple = eqx.field(static=True)
    theta_fns: tuple = eqx.field(static=True)
    amp_fns: tuple = eqx.field(static=True)

    @classmethod
    def build(cls, problem, emulators):
        ells, observed = [], []
        for spec, model, _, _ in problem:
            ell, sel = _covered(spec, model.lmax + 1)
            ells.append(tuple(ell.tolist()))
            observed.append((jnp.asarray(spec.cl[sel]) - spec.noise_level, jnp.diag(jnp.asarray(spec.sigma[sel]) ** 2)))
        return cls(emulators=list(emulators), observed=observed, ells=tuple(ells),
                   sky_realisations=tuple(int(spec.sky_realisations) for spec, _, _, _ in problem),
                   theta_fns=tuple(p[2] for p in problem), amp_fns=tuple(p[3] for p in problem))

    def _spectra(self):
        return zip(self.emulators, self.observed, self.sky_realisations, self.theta_fns, self.amp_fns)

    def terms(self, phi, sigmas):
        """(χ², box penalty, max |z| over the boxes, amplitudes)."""
        chi2, penalty, z_max, amps = 0.0, 0.0, 0.0, []
        for (emu, (o, _), _, theta_fn, amp_fn), sig in zip(self._spectra(), sigmas):
            theta = theta_fn(phi)
            z = jnp.abs(emu.box_coordinates(theta))
            penalty += _BARRIER * jnp.sum(jnp.maximum(z - 1.0, 0.0) ** 2)
            z_max = jnp.maximum(z_max, jnp.max(z))
            c2, a = _fixed_sigma_chi2(emu.mean(theta), o, sig, None if amp_fn is None else amp_fn(phi))
            chi2, amps = chi2 + c2, amps + [a]
        return chi2, penalty, z_max, amps

    def objective(self, phi, sigmas):
        chi2, penalty, _, _ = self.terms(phi, sigmas)
        return chi2 + penalty

    def data_covariances(self, phi):
        """Σ*_k = a_k² S_k(θ_k) + diag(σ_ℓ²) at φ, the amplitude profiled with Σ(θ) if not fixed."""
        out = []
        for emu, (o, meas), r_sky, theta_fn, amp_fn in self._spectra():
            theta = theta_fn(phi)
            sky = emu.sky_covariance(theta, r_sky)
            _, a = _gls_chi2(emu.mean(theta), sky, o, meas, None if amp_fn is None else amp_fn(phi))
            out.append(a**2 * sky + meas)
        return out

    def model_spectra(self, phi, sigmas):
        """(ℓ, a⟨C_ℓ⟩, a·sqrt(diag S_sky)) per spectrum at φ, and the amplitudes a."""
        _, _, _, amps = self.terms(phi, sigmas)
        out = []
        for (emu, _, r_sky, theta_fn, _), ell, a in zip(self._spectra(), self.ells, amps):
            theta = theta_fn(phi)
            sky = np.diag(np.asarray(emu.sky_covariance(theta, r_sky)))
            out.append((np.array(ell), float(a) * np.asarray(emu.mean(theta)), float(a) * np.sqrt(sky)))
        return out, [float(a) for a in amps]


@eqx.filter_jit
def _emulated_grid(like: _EmulatedLikelihood, grid, sigmas):
    return jax.vmap(like.objective, in_axes=(0, None))(grid, sigmas)


@eqx.filter_jit
def _emulated_minimum(like: _EmulatedLikelihood, x0, sigmas, fixed, value):
    """(φ, χ² without penalty, max |z|) at the minimum of the emulated χ² from x0, the components
    where ``fixed`` is true held at ``value`` (a profile; none fixed for the best fit): they are
    overwritten inside the objective, so their gradient vanishes and L-BFGS moves only the others.
    One compilation serves the best fit and every profile point."""
    insert = lambda p: jnp.where(fixed, value, p)  # noqa: E731
    phi = insert(_lbfgs_minimise(lambda p: like.objective(insert(p), sigmas), x0))
    chi2, _, z_max, _ = like.terms(phi, sigmas)
    return phi, chi2, z_max


@eqx.filter_jit
def _emulated_covariances(like: _EmulatedLikelihood, phi):
    return like.data_covariances(phi)


@eqx.filter_jit
def _emulated_hessian(like: _EmulatedLikelihood, phi, sigmas):
    return jax.hessian(lambda p: like.terms(p, sigmas)[0])(phi)


def _minimise_emulated(like: _EmulatedLikelihood, centre, halfwidth, n_start: int = 9, iterations: int = 3):
    """Best fit (φ̂, χ², max |z|) and Σ* there: the best of an n_start^P grid over centre ±
    halfwidth, polished by L-BFGS; Σ* refreshed at the best fit ``iterations`` times."""
    grid = _box_grid(centre, halfwidth, n_start)
    sigmas = _emulated_covariances(like, jnp.asarray(centre))
    phi = jnp.asarray(grid[int(np.nanargmin(np.asarray(_emulated_grid(like, jnp.asarray(grid), sigmas))))])
    free = jnp.zeros(len(centre), dtype=bool)
    for _ in range(iterations):
        phi, chi2, z_max = _emulated_minimum(like, phi, sigmas, free, jnp.asarray(0.0))
        sigmas = _emulated_covariances(like, phi)
    phi, chi2, z_max = _emulated_minimum(like, phi, sigmas, free, jnp.asarray(0.0))
    return phi, sigmas, float(chi2), float(z_max)


def _emulated_profile(like: _EmulatedLikelihood, index: int, values, phi_hat, sigmas):
    """Profile χ² with φ_index fixed at each of ``values`` (increasing): (χ², max |z|) arrays,
    each point started from its neighbour's solution, outward from the best fit."""
    fixed = jnp.arange(len(phi_hat)) == index
    chi2, z_max = np.empty(len(values)), np.empty(len(values))
    k = int(np.argmin(np.abs(np.asarray(values) - float(phi_hat[index]))))
    for order in (range(k, len(values)), range(k - 1, -1, -1)):
        start = phi_hat
        for j in order:
            start, c2, z = _emulated_minimum(like, start, sigmas, fixed, jnp.asarray(float(values[j])))
            chi2[j], z_max[j] = float(c2), float(z)
    return chi2, z_max


def _open_ends(closed_lo, closed_hi):
    return "both ends" if not (closed_lo or closed_hi) else ("low end" if not closed_lo else "high end")


def _design_pools(problem, reuse):
    """Per spectrum the design points evaluated so far: those of ``reuse`` (a previous emulator
    fit of the same spectra and models) or none."""
    if reuse is None:
        return [dict(model=model, theta=np.zeros((0, 2)), mean=None, cov=None) for _, model, _, _ in problem]
    if not reuse.design or len(reuse.design) != len(problem):
        raise ValueError("reuse must be a FitResult of an emulator fit of as many spectra")
    for k, ((_, model, _, _), pool) in enumerate(zip(problem, reuse.design)):
        if pool["model"] != model:
            raise ValueError(f"reuse: spectrum {k} was fitted with another model or mask ({pool['model']} vs {model})")
    return [dict(pool) for pool in reuse.design]


def _run_emulator_fit(problem, phi0, names, box_axes, *, box, design_points, max_rounds, reuse, progress,
                      degree: int = 2):
    """Fit on emulators built from designs centred on the current estimate (see ``fit_spectrum``).
    ``box_axes[i]`` says which half-width of ``box`` (σ² or ρ) sets the search range of φ_i."""
    from tqdm.auto import tqdm

    _checks.check_positive_int("max_rounds", max_rounds)
    _checks.check_positive_int("design_points", design_points)
    if design_points < 3:
        raise ValueError(f"design_points must be >= 3 (a quadratic emulator per axis); got {design_points}")
    box = np.asarray(box, dtype=float)
    if box.shape != (2,):
        raise ValueError(f"box must give two half-widths (e-folds of σ² and ρ); got shape {box.shape}")
    _checks.check_positive("box", box)
    t0 = _time.perf_counter()
    pools = _design_pools(problem, reuse)
    centre, halfwidth = np.asarray(phi0, dtype=float), box[list(box_axes)]
    history, converged, message = [], False, f"max_rounds={max_rounds} reached before the estimate settled"
    bar = tqdm(total=max_rounds, disable=not progress, desc="fit (emulator)", unit="round")
    for rnd in range(max_rounds):
        emulators, n_inside = [], []
        for k, ((observed, model, theta_fn, _), pool) in enumerate(zip(problem, pools)):
            c = np.asarray(theta_fn(jnp.asarray(centre)))
            design = _box_grid(c, box, design_points)
            mean, cov = _model_moments(model, design, 1 + _TAG_STRIDE * k + len(pool["theta"]))
            pool["theta"] = np.concatenate([pool["theta"], design])
            pool["mean"] = mean if pool["mean"] is None else np.concatenate([pool["mean"], mean])
            pool["cov"] = cov if pool["cov"] is None else np.concatenate([pool["cov"], cov])
            inside = np.all(np.abs(pool["theta"] - c) <= box * (1 + 1e-9), axis=1)
            n_inside.append(int(inside.sum()))
            ell, _ = _covered(observed, model.lmax + 1)
            emulators.append(_SpectrumEmulator.fit(pool["theta"][inside], pool["mean"][inside][:, ell],
                                                   pool["cov"][inside][:, ell][:, :, ell], model.n_realisations,
                                                   degree, c, box))
        like = _EmulatedLikelihood.build(problem, emulators)
        phi, sigmas, chi2, z_max = _minimise_emulated(like, centre, halfwidth)
        if not (np.isfinite(chi2) and np.all(np.isfinite(np.asarray(phi)))):
            raise FloatingPointError(f"the emulated χ² is not finite at its minimum in round {rnd} (χ² = {chi2}): "
                                     "check the spectra (σ_ℓ > 0, finite C_ℓ, C_ℓ above the noise level)")
        fisher = 0.5 * np.asarray(_emulated_hessian(like, phi, sigmas))
        cov, null = _fisher_covariance(fisher)
        sigma = np.sqrt(np.where(np.isfinite(np.diag(cov)) & (np.diag(cov) >= 0), np.diag(cov), np.inf))
        shift = np.asarray(phi) - centre
        history.append(dict(round=rnd, centre=dict(zip(names, np.exp(centre).tolist())),
                            estimate=dict(zip(names, np.exp(np.asarray(phi)).tolist())), chi2=float(chi2),
                            shift_sigma=(np.abs(shift) / sigma).tolist(), box_z_max=float(z_max),
                            design_points=n_inside,
                            emulator_max_reduced_chi2=[float(max(e.reduced_chi2)) for e in emulators],
                            wall_time_s=_time.perf_counter() - t0))
        bar.set_postfix_str(f"χ²={float(chi2):.4g}, shift {np.max(np.abs(shift) / sigma):.2f}σ, |z|={float(z_max):.2f}")
        bar.update(1)
        centre = np.asarray(phi)
        if float(z_max) <= 0.75 and np.all(np.abs(shift) <= sigma):
            converged = True
            message = (f"estimate within 1σ of the design centre and inside the inner 75 % of the design box "
                       f"after {rnd + 1} rounds")
            break
    bar.close()
    phi_hat = jnp.asarray(centre)
    intervals, log_unc, degenerate = {}, {}, _degenerate(cov, null, names)
    for i, name in enumerate(names):
        reach = min(max(4.0 * sigma[i], 0.2), 2.0 * halfwidth[i]) if np.isfinite(sigma[i]) else 2.0 * halfwidth[i]
        x = float(phi_hat[i]) + reach * np.linspace(-1.0, 1.0, 41)
        prof, z = _emulated_profile(like, i, x, phi_hat, sigmas)
        edge = z > 1.0 - 1e-3
        intervals[name] = {f"{lvl}": _level_interval(x, prof - float(chi2), level, stop=edge)
                           for lvl, level in (("68", 1.0), ("95", 4.0))}
        lo, hi, closed_lo, closed_hi = intervals[name]["68"]
        log_unc[name] = 0.5 * float(np.log(hi / lo)) if closed_lo and closed_hi else float("inf")
        if not (closed_lo and closed_hi):
            degenerate.append(f"{name}: the 68 % profile-likelihood interval [{lo:.3g}, {hi:.3g}] does not close "
                              f"inside the emulator's design box ({_open_ends(closed_lo, closed_hi)} open)")
    spectra, amps = like.model_spectra(phi_hat, sigmas)
    lyap = []
    for _, model, theta_fn, _ in problem:
        lam, lam_se = _model_lyapunov(theta_fn(phi_hat), model)
        lyap.append((lam, lam_se, lam * model.time))
    return FitResult(
        parameters=dict(zip(names, np.exp(np.asarray(phi_hat)).tolist())), log_uncertainties=log_unc,
        covariance=cov, names=tuple(names), amplitudes=amps, chi2=float(chi2),
        n_data=int(sum(len(ell) for ell, _, _ in spectra)), converged=converged, message=message,
        degenerate=degenerate, history=history, estimator="emulator", wall_time_s=_time.perf_counter() - t0,
        model_spectra=spectra, optimizer="lbfgs", lyapunov=lyap, fisher=fisher, intervals=intervals, design=pools)


@dataclasses.dataclass
class LikelihoodScan:
    """χ²(σ², ρ) on a grid and the profile likelihood of each parameter (:func:`profile_likelihood`).

    ``chi2[i, j]`` is χ² at (sigma2[i], rho[j]) with the amplitude profiled (or fixed).
    ``profile(name)`` gives (values, χ²_min over the other parameter); ``interval(name, level)``
    the region where that profile lies within ``level`` of its minimum (Δχ² = 1: 68.3 %,
    4: 95.4 % for one parameter, Wilks). An end that does not close inside the grid is returned
    as the grid edge and flagged open: the data do not bound the parameter there.

    A direct scan (``kind="direct"``) also keeps the model's mean spectrum and covariance at every
    grid point (``mean_cl``, ``cov_cl``, all ℓ ≤ lmax), from which :meth:`emulated` builds the
    smooth surface; ``emulator`` holds the emulator's diagnostics in an emulated scan.
    """

    sigma2: np.ndarray
    rho: np.ndarray
    chi2: np.ndarray
    amplitudes: np.ndarray
    n_data: int
    n_realisations: int
    wall_time_s: float
    kind: str = "direct"
    mean_cl: np.ndarray | None = None  # (S, P, L) model mean spectra on the grid
    cov_cl: np.ndarray | None = None  # (S, P, L, L) per-realisation covariances
    observed: ObservedSpectrum | None = None
    amplitude: float | None = None
    emulator: dict | None = None

    def _axes(self, name):
        if name == "sigma2":
            return np.log(self.sigma2), self.chi2
        if name == "rho":
            return np.log(self.rho), self.chi2.T
        raise ValueError(f"name must be 'sigma2' or 'rho'; got {name!r}")

    def profile(self, name: str):
        """(parameter values, profile χ²): χ² minimised over the other parameter at each value
        (a parabola through the three grid points around the discrete minimum refines it)."""
        x, table = self._axes(name)
        other = np.log(self.rho) if name == "sigma2" else np.log(self.sigma2)
        return np.exp(x), np.array([_parabolic_minimum(other, row)[1] for row in table])

    def best(self) -> dict:
        """Grid point of smallest χ², refined by a parabola along each axis."""
        i, j = np.unravel_index(np.argmin(self.chi2), self.chi2.shape)
        ls, _ = _parabolic_minimum(np.log(self.sigma2), self.chi2[:, j])
        lr, _ = _parabolic_minimum(np.log(self.rho), self.chi2[i, :])
        return dict(sigma2=float(np.exp(ls)), rho=float(np.exp(lr)), chi2=float(self.chi2[i, j]))

    def interval(self, name: str, level: float = 1.0):
        """(low, high, closed_low, closed_high): where the profile χ² ≤ its minimum + level."""
        values, prof = self.profile(name)
        x = np.log(values)
        return _level_interval(x, prof - prof.min(), level)

    def with_observed(self, observed: ObservedSpectrum, amplitude: float | None = None) -> "LikelihoodScan":
        """The same model grid against another spectrum (no new backtracking): χ² recomputed
        from the stored model means and covariances. For calibration runs over many synthetic skies.
        The spectrum must have the same mask and ℓ ≤ L removal as the scanned one."""
        if self.mean_cl is None or self.observed is None:
            raise ValueError("with_observed() needs a direct scan from profile_likelihood (with its model spectra)")
        for key in ("dec_min_deg", "dec_max_deg", "remove_ell_max"):
            if getattr(observed, key) != getattr(self.observed, key):
                raise ValueError(f"{key} differs from the scanned spectrum's ({getattr(observed, key)} vs "
                                 f"{getattr(self.observed, key)}): the model spectra were made for that mask")
        if amplitude is not None:
            _checks.check_positive("amplitude", amplitude)
        amp = None if amplitude is None else jnp.asarray(amplitude)
        flat_m = jnp.asarray(self.mean_cl.reshape(-1, self.mean_cl.shape[-1]))
        flat_c = jnp.asarray(self.cov_cl.reshape(-1, *self.cov_cl.shape[-2:]))
        c2, a = jax.vmap(lambda mm, cc: chi2_profiled(mm, cc, observed, self.n_realisations, amp))(flat_m, flat_c)
        bad = ~np.isfinite(np.asarray(c2))
        if bad.any():
            i, j = np.unravel_index(int(np.argmax(bad)), self.chi2.shape)
            raise FloatingPointError(f"χ² is not finite at σ² = {self.sigma2[i]:g}, ρ = {self.rho[j]:g}: check the "
                                     "spectrum (σ_ℓ > 0, finite C_ℓ) and the model settings")
        ell, _ = _covered(observed, self.mean_cl.shape[-1])
        return dataclasses.replace(self, chi2=np.asarray(c2).reshape(self.chi2.shape),
                                   amplitudes=np.asarray(a).reshape(self.chi2.shape), observed=observed,
                                   amplitude=amplitude, n_data=len(ell))

    def emulated(self, points: int = 81, degree: int = 2, covariance: str = "fixed") -> "LikelihoodScan":
        """The χ² surface of a smooth emulator of the model, on a ``points`` × ``points`` grid.

        At long backtracking times the model at neighbouring grid points is decorrelated by
        chaos, so each point carries its own sampling noise (the direct χ² surface jumps by
        ~10-40 between neighbours at 32 realisations) and a profile read off it is noise. The
        emulator pools all grid points: per multipole, ln⟨C_ℓ⟩ is fitted by a polynomial of
        ``degree`` in (ln σ², ln ρ) (least squares; standard errors from the pooled relative
        variance), and the cosmic variance is modelled as S(θ) = ⟨C⟩⟨C⟩ᵀ ∘ R̄ with R̄ the
        relative covariance S/(⟨C⟩⟨C⟩ᵀ) averaged over the grid (assumes the relative scatter
        varies little across it). Then Σ = a² [S/R_sky + V_emu] + diag(σ_ℓ²), V_emu the
        emulator's own error (propagated from the fit, correlated across ℓ like the
        realisations, scaled up by the fit's reduced χ² where that exceeds 1).

        ``covariance="fixed"`` (default) evaluates the whole surface with the data covariance Σ*
        (absolute units) of the best fit, found iteratively; "varying" uses Σ(θ) at every point.
        With Σ ∝ ⟨C(θ)⟩², χ² alone is smaller wherever the model is larger, which with a known
        amplitude biases σ² upwards: over 20 synthetic skies (experiments/calibrate_likelihood.py,
        32 realisations per grid point) the 68 % interval of σ² covered the truth in 35 % of them
        with Σ(θ), 45 % with Σ* (58 % over 40 skies at 64 realisations per point).

        ``emulator`` of the result records, per ℓ, the reduced χ² of the polynomial fit: values
        ≫ 1 mean the polynomial cannot follow the model and the emulated intervals are not to be
        trusted (raise ``degree`` or narrow the grid).
        """
        if self.mean_cl is None or self.observed is None:
            raise ValueError("emulated() needs a direct scan from profile_likelihood (with its model spectra)")
        _checks.check_positive_int("points", points)
        if degree not in (1, 2, 3):
            raise ValueError(f"degree must be 1, 2 or 3; got {degree!r}")
        if covariance not in ("fixed", "varying"):
            raise ValueError(f"covariance must be 'fixed' or 'varying'; got {covariance!r}")
        obs = self.observed
        ell, sel = _covered(obs, self.mean_cl.shape[-1])
        x, y = np.log(self.sigma2), np.log(self.rho)
        X, Y = np.meshgrid(x, y, indexing="ij")
        emu = _SpectrumEmulator.fit(np.stack([X.ravel(), Y.ravel()], -1),
                                    self.mean_cl.reshape(-1, self.mean_cl.shape[-1])[:, ell],
                                    self.cov_cl.reshape(-1, *self.cov_cl.shape[-2:])[:, ell][:, :, ell],
                                    self.n_realisations, degree, centre=(x.mean(), y.mean()),
                                    scale=(np.ptp(x) / 2, np.ptp(y) / 2))
        xs = np.linspace(x[0], x[-1], points)
        ys = np.linspace(y[0], y[-1], points)
        Xs, Ys = np.meshgrid(xs, ys, indexing="ij")
        thetas = jnp.asarray(np.stack([Xs.ravel(), Ys.ravel()], -1))
        mean = np.asarray(jax.vmap(emu.mean)(thetas))  # (points², L')
        sky = np.asarray(jax.vmap(lambda t: emu.sky_covariance(t, obs.sky_realisations))(thetas))
        o = jnp.asarray(obs.cl[sel]) - obs.noise_level
        meas = jnp.diag(jnp.asarray(obs.sigma[sel]) ** 2)
        amp = None if self.amplitude is None else jnp.asarray(self.amplitude)
        c2, a = jax.vmap(lambda mm, ss: _gls_chi2(mm, ss, o, meas, amp))(jnp.asarray(mean), jnp.asarray(sky))
        if covariance == "fixed":
            # The data covariance Σ* = a*² S(θ*) + diag(σ²) in absolute units, at the best fit θ*,
            # for every point (with the amplitude profiled, a relative S would scale with 1/⟨C⟩²
            # through a and favour small models); iterated: best point → Σ* → surface → best point.
            fixed = jax.vmap(lambda mm, sig: _fixed_sigma_chi2(mm, o, sig, amp), in_axes=(0, None))
            for _ in range(3):
                best = int(np.argmin(np.asarray(c2)))
                a_best = float(amp) if amp is not None else float(np.asarray(a)[best])
                c2, a = fixed(jnp.asarray(mean), jnp.asarray(a_best**2 * sky[best]) + meas)
        c2 = np.asarray(c2).reshape(points, points)
        if not np.all(np.isfinite(c2)):
            raise FloatingPointError("the emulated χ² surface is not finite: check the scan and the spectrum")
        return dataclasses.replace(
            self, sigma2=np.exp(xs), rho=np.exp(ys), chi2=c2, amplitudes=np.asarray(a).reshape(points, points),
            kind=f"emulated, degree {degree}, {covariance} Σ", mean_cl=None, cov_cl=None,
            emulator=dict(degree=degree, covariance=covariance, ell=ell.tolist(), reduced_chi2=emu.reduced_chi2.tolist(),
                          max_reduced_chi2=float(max(emu.reduced_chi2)), grid_points=int(X.size),
                          mean_cl=mean.reshape(points, points, -1)))

    def summary(self) -> str:
        b = self.best()
        lines = [f"profile likelihood ({self.kind}) on a {len(self.sigma2)}×{len(self.rho)} grid "
                 f"({self.n_realisations} model realisations, {self.n_data} points, {self.wall_time_s:.0f} s): χ²_min = {b['chi2']:.3g} "
                 f"at σ² = {b['sigma2']:.3g}, ρ = {b['rho']:.3g}"]
        for name in ("sigma2", "rho"):
            lo, hi, clo, chi = self.interval(name)
            lines.append(f"  {name}: 68 % interval [{lo:.3g}{'' if clo else ' (open: grid edge)'}, "
                         f"{hi:.3g}{'' if chi else ' (open: grid edge)'}]")
        return "\n".join(lines)


def _parabolic_minimum(x, y):
    """(x*, y*) of the parabola through the discrete minimum of y(x) and its two neighbours
    (the grid point itself at an edge or where the three points are not convex)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    k = int(np.argmin(y))
    if k == 0 or k == len(y) - 1:
        return float(x[k]), float(y[k])
    c = np.polyfit(x[k - 1:k + 2], y[k - 1:k + 2], 2)
    if c[0] <= 0:
        return float(x[k]), float(y[k])
    xv = -c[1] / (2 * c[0])
    return float(xv), float(min(np.polyval(c, xv), y[k]))


def _level_interval(x, dy, level, stop=None):
    """Where dy(x) ≤ level around its minimum, by linear interpolation of the crossings, in exp(x).

    ``stop`` (one bool per point) marks points where the profile is not to be trusted (beyond
    the emulator's design box): an end that reaches one before crossing is returned open, at the
    last trusted point."""
    stop = np.zeros(len(x), dtype=bool) if stop is None else np.asarray(stop)
    k = int(np.argmin(np.where(stop, np.inf, dy))) if not stop.all() else int(np.argmin(dy))  # a trusted minimum
    ends = []
    for step, last in ((-1, 0), (1, len(x) - 1)):
        end, closed = x[last], False
        for i in range(k, last, step):
            if stop[i + step]:
                end = x[i]
                break
            if dy[i + step] > level:
                end, closed = x[i] + (x[i + step] - x[i]) * (level - dy[i]) / (dy[i + step] - dy[i]), True
                break
        ends.append((end, closed))
    (lo, closed_lo), (hi, closed_hi) = ends
    return float(np.exp(lo)), float(np.exp(hi)), closed_lo, closed_hi


def profile_likelihood(observed: ObservedSpectrum, model: SpectrumModel, sigma2, rho, *,
                       amplitude: float | None = None, common_random_numbers: bool = False,
                       progress: bool = True) -> LikelihoodScan:
    """χ²(σ², ρ) of one spectrum on the grid ``sigma2`` × ``rho`` (increasing positive values).

    Each grid point backtracks N_B realisations and evaluates :func:`chi2_profiled` with their
    mean and covariance, the amplitude profiled unless given. No gradient is involved, so neither
    chaos nor Jacobian noise enters: the profile-likelihood intervals
    (:meth:`LikelihoodScan.interval`) are the check on the Fisher errors of :func:`fit_spectrum`,
    which rest on an estimated curvature. At long times the direct surface is jagged (each point
    has its own sampling noise); :meth:`LikelihoodScan.emulated` pools the grid into a smooth one.

    By default every grid point draws its own realisations (keys folded from the model seed and
    the point's index), so the model noise is independent from point to point and the emulator
    averages it away. With ``common_random_numbers=True`` every point uses the model's own keys
    (those of :func:`realisation_spectra`); do not emulate such a scan: its noise is correlated
    across the grid (a realisation that wanders far raises the whole surface), the emulator takes
    that offset for signal, and its intervals do not cover (measured: σ² with a known amplitude
    covered in 3 of 20 synthetic skies at 68 %). Cost: len(sigma2)·len(rho) model evaluations
    (≈ 1 s each for the quick fit model, 32 realisations, on 2 CPU cores).
    """
    model.validate()
    grids = []
    for name, g in (("sigma2", sigma2), ("rho", rho)):
        g = np.asarray(g, dtype=float)
        if g.ndim != 1 or len(g) < 3:
            raise ValueError(f"{name} grid must be 1-D with at least 3 values; got shape {g.shape}")
        _checks.check_positive(f"{name} grid", g)
        if np.any(np.diff(g) <= 0):
            raise ValueError(f"{name} grid must be strictly increasing")
        grids.append(g)
    if amplitude is not None:
        _checks.check_positive("amplitude", amplitude)
    from tqdm.auto import tqdm

    m = model.with_observatory(observed)
    t0 = _time.perf_counter()
    shape = (len(grids[0]), len(grids[1]))
    means = np.empty((*shape, m.lmax + 1))
    covs = np.empty((*shape, m.lmax + 1, m.lmax + 1))
    bar = tqdm(total=means[..., 0].size, disable=not progress, desc="likelihood scan", unit="point")
    for i, s2 in enumerate(grids[0]):
        for j, r in enumerate(grids[1]):
            theta = np.log([[s2, r]])
            if common_random_numbers:
                spectra = _spectra_at(jnp.broadcast_to(jnp.asarray(theta[0]), (m.n_realisations, 2)), m)
                means[i, j], covs[i, j] = spectra.mean(0), spectrum_covariance(spectra)
            else:
                (means[i, j],), (covs[i, j],) = _model_moments(m, theta, 1 + i * len(grids[1]) + j)
            bar.update(1)
    bar.close()
    scan = LikelihoodScan(sigma2=grids[0], rho=grids[1], chi2=np.zeros(shape), amplitudes=np.zeros(shape), n_data=0,
                          n_realisations=m.n_realisations, wall_time_s=_time.perf_counter() - t0, mean_cl=means,
                          cov_cl=covs, observed=observed)
    return scan.with_observed(observed, amplitude)
