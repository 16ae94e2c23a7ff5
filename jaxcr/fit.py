"""Observatory forward model, gradient estimators that survive chaos, and optax fits.

Forward model (:class:`SpectrumModel`). For turbulence parameters θ = (ln σ², ln ρ), ρ = r_L/λ_c
(the combination that sets the spectrum's shape; λ_min/λ_c and λ_max/λ_c fixed), N_B field
realisations (fixed keys: common random numbers), every pixel of a HEALPix sky is backtracked to
ΩT = ``time``; the map δI = r(−T)·ĝ (Eq. 7, unit gradient ĝ, B0 along ``b0_direction``, both in
the observatory's equatorial frame) goes through the observatory's mask (declination band),
optional removal of the fitted ℓ ≤ L structure, and the pseudo-C_ℓ estimator (healpy ``anafast``
equivalent). The model for the observed spectrum is

    C_ℓ^model = a ⟨C_ℓ⟩(θ) + N,

with a = (|∇n/n| r_L)² (profiled analytically, or fixed when the gradient is known) and N the
observatory's shot noise. The χ² uses σ_ℓ² + (a · SE(⟨C_ℓ⟩))², the model's own sampling error.

Gradients (:func:`estimate_gradient`). dχ²/dθ = (∂χ²/∂⟨C⟩)·J with the deterministic tail
(⟨C⟩ → χ²) differentiated exactly and the Jacobian J = d⟨C_ℓ⟩/dθ of the chaotic part estimated
per realisation by one of:

* ``"pathwise"``: forward-mode AD through the solver. Exact for short T; grows like e^{λT}
  (see :mod:`jaxcr.chaos`) and is meaningless once λT ≫ 1.
* ``"crn"``: common-random-number central differences, step ``step`` in ln θ (default 0.05:
  O(h²) = 2.5e-3 relative bias for smooth dependence).
* ``"spsa"``: simultaneous perturbation, J ≈ [s(θ+hΔ) − s(θ−hΔ)]/(2h) Δᵀ with Δ ∈ {±1}^P.
* ``"score"``: likelihood ratio over the random mode amplitudes. It needs amplitudes drawn from a
  θ-dependent density, so the model uses Gaussian (Rayleigh-modulus) amplitudes,
  E_n = A_n(θ)/√2 (ξ_n a_n + η_n b_n), ξ, η ~ N(0, 1), which have the same ⟨|E_n|²⟩ = A_n² as
  Eq. 10. Then ∂/∂ln σ² E[s] = E[(s − b) Σ_n (ξ_n² + η_n² − 2)/2] with a leave-one-out baseline
  b. ρ enters the dynamics (wave numbers in units of r_L), not a density, so its column is
  estimated by CRN differences; ``GradientEstimate.methods`` says which method gave which column.

Every estimate carries its standard error (from the spread over realisations).
"""

from __future__ import annotations

import dataclasses
import functools
import time as _time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import __version__, _checks, units
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
    "fit_spectrum",
    "fit_joint",
    "synthetic_spectrum",
]

ESTIMATORS = ("pathwise", "crn", "spsa", "score")


@dataclasses.dataclass(frozen=True)
class SpectrumModel:
    """Settings of the forward model (all but θ). Lengths in λ_c, times in 1/Ω.

    The defaults are small enough for a CPU fit; for real data raise ``nside`` toward the
    observatory's resolution (C_ℓ is compared only for ℓ ≤ 2·nside − 1).
    """

    nside: int = 4
    n_realisations: int = 16
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


def realisation_spectra(theta, model: SpectrumModel, adjoint: str = "reverse"):
    """Per-realisation pseudo-C_ℓ (R, lmax+1) of the unit-gradient model sky at θ = (ln σ², ln ρ)."""
    return _spectra_at(jnp.broadcast_to(theta, (model.n_realisations, 2)), model, adjoint)


@functools.partial(jax.jit, static_argnames=("model", "adjoint"))
def _spectra_at(thetas, model: SpectrumModel, adjoint: str = "reverse"):
    """Spectra of realisation i at θ_i (thetas of shape (R, 2)); one backtracking run each."""
    keys = jax.random.split(jax.random.key(model.seed), model.n_realisations)
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

    return jax.lax.map(one, (keys, thetas))


def _score_terms(theta, model):
    keys = jax.random.split(jax.random.key(model.seed), model.n_realisations)
    return jax.vmap(lambda k: _field(theta, k, model, model.n_modes)[1])(keys)


def _covered(observed: ObservedSpectrum, n_ell: int):
    """The observed multipoles ℓ < n_ell (those the model spectrum has) and their row mask."""
    sel = np.asarray(observed.ell) < n_ell
    return np.asarray(observed.ell)[sel], sel


def chi2_profiled(mean_cl, sem_cl, observed: ObservedSpectrum, amplitude=None):
    """χ² of C^model = a⟨C_ℓ⟩ + N against the observed ℓ (≤ model lmax); a profiled if None.

    Returns (χ², a). Weights 1/(σ_ℓ² + (a SE_ℓ)²) are held fixed in the derivative.
    """
    ell, sel = _covered(observed, mean_cl.shape[-1])
    m, se = mean_cl[ell], sem_cl[ell]
    o = jnp.asarray(observed.cl[sel]) - observed.noise_level
    s2 = jnp.asarray(observed.sigma[sel]) ** 2
    if amplitude is None:
        w0 = 1.0 / s2
        a0 = jax.lax.stop_gradient(jnp.sum(w0 * m * o) / jnp.sum(w0 * m * m))
        w = jax.lax.stop_gradient(1.0 / (s2 + (a0 * se) ** 2))
        a = jnp.sum(w * m * o) / jnp.sum(w * m * m)
    else:
        a = amplitude
        w = jax.lax.stop_gradient(1.0 / (s2 + (a * se) ** 2))
    return jnp.sum(w * (o - a * m) ** 2), a


class GradientEstimate(eqx.Module):
    """An estimate of J = d⟨C_ℓ⟩/dθ (and of dχ²/dθ when a spectrum is given), with standard errors."""

    theta: jax.Array
    mean_cl: jax.Array
    sem_cl: jax.Array
    jacobian: jax.Array  # (L, P)
    jacobian_stderr: jax.Array
    per_realisation_jacobian: jax.Array  # (R, L, P)
    methods: tuple = eqx.field(static=True)
    wall_time_s: float = eqx.field(static=True)

    def loss_gradient(self, observed: ObservedSpectrum, amplitude=None):
        """(χ², dχ²/dθ, its standard error, a): the exact tail gradient times the estimated J."""
        (chi2, a), dm = jax.value_and_grad(lambda m: chi2_profiled(m, self.sem_cl, observed, amplitude), has_aux=True)(
            self.mean_cl)
        per = jnp.einsum("l,rlp->rp", dm, self.per_realisation_jacobian)
        g, g_se = mean_and_sem(per)
        return chi2, g, g_se, a


def estimate_gradient(theta, model: SpectrumModel, method: str = "crn", *, step: float = 0.05, seed: int = 1
                      ) -> GradientEstimate:
    """Estimate ⟨C_ℓ⟩(θ), its SE and the Jacobian d⟨C_ℓ⟩/dθ by ``method`` (module docstring)."""
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
                                 "when λT is large: use 'crn', 'spsa' or 'score')")
    mean, sem = mean_and_sem(s0)
    jac, jac_se = mean_and_sem(jnp.asarray(per))
    return GradientEstimate(theta=theta, mean_cl=mean, sem_cl=sem, jacobian=jac, jacobian_stderr=jac_se,
                            per_realisation_jacobian=jnp.asarray(per), methods=methods,
                            wall_time_s=_time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# Fits
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FitResult:
    """Best fit, uncertainties and diagnostics.

    ``parameters`` are the fitted physical values; ``log_uncertainties`` are 1σ errors of their
    natural logarithms (≈ relative errors) from the Fisher matrix (Gauss-Newton curvature of χ²
    with the estimated Jacobian, the profiled amplitudes marginalised); ``degenerate`` lists
    parameter combinations the data do not constrain (then the corresponding values are not
    meaningful and are reported as such, not hidden).
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
    model_spectra: list  # (ell, model C_ℓ, model SE) per spectrum at the best fit

    def summary(self) -> str:
        lines = [f"fit ({self.estimator}): χ² = {self.chi2:.3g} for {self.n_data} points, "
                 f"{'converged' if self.converged else 'NOT converged'} ({self.message}), {self.wall_time_s:.1f} s"]
        for name in self.names:
            lines.append(f"  {name} = {self.parameters[name]:.4g} (±{100 * self.log_uncertainties[name]:.1f} %)")
        for d in self.degenerate:
            lines.append(f"  DEGENERATE: {d}")
        return "\n".join(lines)


def _fisher(blocks, n_phi):
    """Gauss-Newton Fisher matrix of the ln-parameters with the profiled amplitudes marginalised.

    Returns (covariance, null_directions): directions along which the Fisher matrix vanishes
    (relative eigenvalue < 1e-9) are not constrained at all; the covariance is the inverse on
    the constrained subspace, and infinite variance is reported along the null directions.
    """
    n_amp = sum(1 for b in blocks if b["profiled"])
    rows, k = [], n_phi
    for b in blocks:
        d = np.zeros((b["m"].shape[0], n_phi + n_amp))
        d[:, :n_phi] = b["D_phi"]
        if b["profiled"]:
            d[:, k] = b["a"] * b["m"]  # ∂μ/∂ln a
            k += 1
        rows.append(d * np.sqrt(b["w"])[:, None])
    D = np.concatenate(rows)
    F = D.T @ D
    Fm = F[:n_phi, :n_phi]
    if n_amp:  # Schur complement: marginalise the amplitudes
        Fm = Fm - F[:n_phi, n_phi:] @ np.linalg.solve(F[n_phi:, n_phi:], F[n_phi:, :n_phi])
    vals, vecs = np.linalg.eigh(0.5 * (Fm + Fm.T))
    null = vals <= 1e-9 * max(vals.max(), 1e-300)
    cov = (vecs[:, ~null] / vals[~null]) @ vecs[:, ~null].T
    for v in vecs[:, null].T:
        involved = np.abs(v) > 0.05
        cov = np.where(np.outer(involved, involved), np.inf, cov)
    return cov, vecs[:, null].T


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


def _run_fit(problem, phi0, names, to_physical, *, estimator, learning_rate, max_steps, tol, patience, progress, step):
    from tqdm.auto import tqdm

    t0 = _time.perf_counter()
    phi = jnp.asarray(phi0, dtype=float)
    opt = optax.adam(learning_rate)
    state = opt.init(phi)
    history, best, still = [], None, 0
    converged, message = False, f"max_steps={max_steps} reached"

    def evaluate(phi):
        total, grad, var, blocks = 0.0, jnp.zeros_like(phi), jnp.zeros_like(phi), []
        for observed, model, theta_fn, amp_fn in problem:
            theta, dtheta = theta_fn(phi), jax.jacfwd(theta_fn)(phi)
            est = estimate_gradient(theta, model, estimator, step=step)
            amp = None if amp_fn is None else amp_fn(phi)
            chi2, g, g_se, a = est.loss_gradient(observed, amp)
            total += chi2
            grad += g @ dtheta
            if amp is not None:  # the fixed amplitude depends on φ (through r_L): exact AD of that path
                grad += jax.grad(lambda p: chi2_profiled(est.mean_cl, est.sem_cl, observed, amp_fn(p))[0])(phi)
            var += (g_se @ jnp.abs(dtheta)) ** 2
            ell, sel = _covered(observed, model.lmax + 1)
            se = np.asarray(est.sem_cl)[ell]
            m = np.asarray(est.mean_cl)[ell]
            d_phi = float(a) * np.asarray(est.jacobian)[ell] @ np.asarray(dtheta)  # ∂(a⟨C⟩)/∂φ
            if amp is not None:
                d_phi = d_phi + np.outer(m, np.asarray(jax.grad(amp_fn)(phi)))
            blocks.append(dict(m=m, D_phi=d_phi, a=float(a), profiled=amp is None, se=se, ell=ell,
                               w=1.0 / (observed.sigma[sel] ** 2 + (float(a) * se) ** 2)))
        return float(total), grad, jnp.sqrt(var), blocks

    bar = tqdm(total=max_steps, disable=not progress, desc="fit", unit="step")
    for it in range(max_steps):
        chi2, grad, grad_se, blocks = evaluate(phi)
        history.append(dict(step=it, chi2=chi2, **{n: float(v) for n, v in zip(names, to_physical(phi))},
                            gradient=np.asarray(grad).tolist(), gradient_stderr=np.asarray(grad_se).tolist()))
        bar.set_postfix_str(f"χ²={chi2:.4g}")
        bar.update(1)
        if best is None or chi2 < best[0] - tol * max(best[0], 1.0):
            best, still = (chi2, phi), 0
        else:
            still += 1
            if still >= patience:
                converged, message = True, f"χ² stopped improving by > {tol:g} (relative) for {patience} steps"
                break
        updates, state = opt.update(grad, state, phi)
        phi = optax.apply_updates(phi, updates)
    bar.close()
    chi2, _, _, blocks = evaluate(best[1])
    phi = best[1]
    cov, null = _fisher(blocks, len(names))
    return FitResult(
        parameters=dict(zip(names, (float(v) for v in to_physical(phi)))),
        log_uncertainties=dict(zip(names, (float(np.sqrt(c)) if c >= 0 else float("inf") for c in np.diag(cov)))),
        covariance=cov, names=tuple(names), amplitudes=[b["a"] for b in blocks], chi2=chi2,
        n_data=int(sum(len(b["m"]) for b in blocks)), converged=converged, message=message,
        degenerate=_degenerate(cov, null, names), history=history, estimator=estimator,
        wall_time_s=_time.perf_counter() - t0,
        model_spectra=[(b["ell"], b["a"] * b["m"], b["a"] * b["se"]) for b in blocks],
    )


def _check_init(init, names):
    for n in names:
        if n not in init:
            raise ValueError(f"init must give {', '.join(names)}; missing {n!r}")
        _checks.check_positive(f"init[{n!r}]", init[n])


def fit_spectrum(observed: ObservedSpectrum, model: SpectrumModel, init: dict, *, estimator: str = "crn",
                 learning_rate: float = 0.1, max_steps: int = 60, tol: float = 1e-3, patience: int = 8,
                 step: float = 0.05, progress: bool = True) -> FitResult:
    """Fit σ² and ρ = r_L/λ_c to one spectrum (amplitude (r_L|∇n/n|)² profiled).

    ``init`` = {"sigma2": ..., "rho": ...}. Optimises ln σ², ln ρ with optax Adam using the chosen
    gradient estimator. The field realisations are fixed (common random numbers), so the
    objective is a deterministic sample-average approximation; the fit stops when χ² has not
    improved by ``tol`` (relative) for ``patience`` steps, or after ``max_steps``.
    """
    names = ("sigma2", "rho")
    _check_init(init, names)
    model.validate()
    problem = [(observed, model.with_observatory(observed), lambda p: p, None)]
    phi0 = jnp.log(jnp.array([init["sigma2"], init["rho"]], dtype=float))
    return _run_fit(problem, phi0, names, jnp.exp, estimator=estimator, learning_rate=learning_rate,
                    max_steps=max_steps, tol=tol, patience=patience, progress=progress, step=step)


def fit_joint(spectra: list, model: SpectrumModel, init: dict, *, gradient_per_pc: float | None = None,
              charge: float = 1.0, estimator: str = "crn", learning_rate: float = 0.1, max_steps: int = 60,
              tol: float = 1e-3, patience: int = 8, step: float = 0.05, progress: bool = True) -> FitResult:
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
    return _run_fit(problem, phi0, names, jnp.exp, estimator=estimator, learning_rate=learning_rate,
                    max_steps=max_steps, tol=tol, patience=patience, progress=progress, step=step)


def synthetic_spectrum(theta, model: SpectrumModel, *, observatory: str, energy_tev: float, amplitude: float,
                       noise_level: float, relative_error: float = 0.1, seed: int = 12345, ells=None,
                       dec_min_deg: float = -90.0, dec_max_deg: float = 90.0, remove_ell_max: int | None = None
                       ) -> ObservedSpectrum:
    """A synthetic observed spectrum made by jaxcr at known θ (labelled ``synthetic``).

    The "sky" is the model at θ with its own field realisations (``seed``, independent of the
    fit's), times ``amplitude``, plus ``noise_level``; σ_ℓ = relative_error·(C_ℓ) ⊕ the model's
    sampling error, and the values are scattered by Gaussian noise of that size.
    """
    sky_model = dataclasses.replace(model, seed=seed, dec_min_deg=dec_min_deg, dec_max_deg=dec_max_deg,
                                    remove_ell_max=remove_ell_max)
    sky_model.validate()
    s = np.asarray(realisation_spectra(jnp.asarray(theta, dtype=float), sky_model))
    mean, sem = (np.asarray(x) for x in mean_and_sem(s))
    ell = np.arange(1 if remove_ell_max is None else remove_ell_max + 1, model.lmax + 1) if ells is None else np.asarray(ells)
    cl = amplitude * mean[ell] + noise_level
    sigma = np.hypot(relative_error * cl, amplitude * sem[ell])
    rng = np.random.default_rng(seed)
    return ObservedSpectrum(ell=ell, cl=cl + rng.normal(size=cl.shape) * sigma, sigma=sigma, observatory=observatory,
                            energy_tev=energy_tev, noise_level=noise_level, dec_min_deg=dec_min_deg,
                            dec_max_deg=dec_max_deg, nside=model.nside, remove_ell_max=remove_ell_max, synthetic=True,
                            source=f"jaxcr {__version__} synthetic, theta={list(map(float, theta))}, "
                                   f"seed={seed}")
