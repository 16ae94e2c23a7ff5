"""Gradient estimators of the model spectrum that survive chaos (experimental; θ = (ln σ², ln ρ)).

dχ²/dθ = (∂χ²/∂⟨C⟩)·J with the deterministic tail (⟨C⟩ → χ²) differentiated exactly and the
Jacobian J = d⟨C_ℓ⟩/dθ of the chaotic part estimated per realisation by one of:

* :class:`Pathwise`: forward-mode AD through the solver. Exact for short T; grows like e^{λT}
  (:mod:`jaxcr.chaos`) and is meaningless once λT ≫ 1.
* :class:`CRN`: common-random-number central differences, step h in ln θ. At long T the orbits
  at θ ± h decorrelate (chaos), the per-realisation difference becomes noise of size ~C/h, and a
  larger step is better: at ΩT = 30 (nside 4, 64 realisations) the standard error of
  d⟨C_ℓ⟩/d ln σ² was 0.2-0.9 ⟨C_ℓ⟩ with h = 0.05 and 0.1-0.2 ⟨C_ℓ⟩ with h = 0.2, so the fits
  default to h = 0.2 (bias (ph)²/6 < 1 % for C ∝ θ^p, p ≤ 1).
* :class:`SPSA`: simultaneous perturbation, J ≈ [s(θ+hΔ) − s(θ−hΔ)]/(2h) Δᵀ with Δ ∈ {±1}^P.
* :class:`Score`: likelihood ratio over the random mode amplitudes. It needs amplitudes drawn
  from a θ-dependent density, so the model uses Gaussian (Rayleigh-modulus) amplitudes,
  E_n = A_n(θ)/√2 (ξ_n a_n + η_n b_n), ξ, η ~ N(0, 1), with the same ⟨|E_n|²⟩ = A_n² as Eq. 10.
  Then ∂/∂ln σ² E[s] = E[(s − b) Σ_n (ξ_n² + η_n² − 2)/2] with a leave-one-out baseline b.
  ρ enters the dynamics (wave numbers in units of r_L), not a density, so its column is
  estimated by CRN differences; ``GradientEstimate.methods`` says which method gave which column.

Every estimate carries its standard error (from the spread over realisations) and the maximal
Lyapunov exponent λ of the model's orbits at θ: pathwise AD is meaningful only while λT is a
few; :func:`estimate_gradient` warns beyond ``PATHWISE_MAX_GROWTH``.
"""

from __future__ import annotations

import time as _time
import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ... import _checks
from ...chaos import lyapunov_exponent
from ...diffusion import mean_and_sem
from ...forward import sample_fields
from ...observations import ObservedSpectrum
from ...random import realisation_keys
from ...spectrum_model import SpectrumModel, spectrum_covariance
from ...spectrum_model import realisation_spectra as named_realisation_spectra
from ...turbulence import TurbulenceNoise
from ...turbulence_model import PlaneWaveGJ99
from .gls import chi2_profiled

__all__ = [
    "GradientEstimator",
    "Pathwise",
    "CRN",
    "SPSA",
    "Score",
    "GradientEstimate",
    "estimate_gradient",
    "PATHWISE_MAX_GROWTH",
    "plane_wave_values",
    "realisation_spectra",
    "spectra_at",
    "score_terms",
    "model_lyapunov",
]

PATHWISE_MAX_GROWTH = 10.0  # λT above which pathwise AD is dominated by chaos (e^{10} ≈ 2×10⁴)


def plane_wave_values(theta) -> dict:
    """The named values of θ = (ln σ², ln ρ), the paper's model's coordinates (may be traced)."""
    return {"sigma2": jnp.exp(theta[0]), "rho": jnp.exp(theta[1])}


def realisation_spectra(theta, model: SpectrumModel, adjoint=None):
    """Per-realisation spectra (R, L) at θ = (ln σ², ln ρ) (:func:`jaxcr.spectrum_model.realisation_spectra`)."""
    return named_realisation_spectra(plane_wave_values(theta), model, adjoint=adjoint)


def spectra_at(thetas, model: SpectrumModel):
    """Spectra of realisation i at θ_i (thetas of shape (R, 2)); one backtracking run each
    (``model.dt`` set)."""
    return named_realisation_spectra(plane_wave_values(jnp.asarray(thetas).T), model)


def score_terms(model: SpectrumModel):
    """d ln p/d ln σ² of each realisation's Gaussian amplitudes (:meth:`TurbulenceNoise.sigma2_score`)."""
    keys = realisation_keys(model.seed, model.n_realisations)
    turbulence = model.turbulence
    if not isinstance(turbulence, PlaneWaveGJ99):
        raise TypeError("score_terms needs the plane-wave model (PlaneWaveGJ99)")
    n = turbulence.n_modes
    return jax.vmap(lambda k: TurbulenceNoise.sample(k, n, gaussian_amplitudes=True).sigma2_score())(keys)


def model_lyapunov(theta, model: SpectrumModel, n_fields: int = 2, n_orbits: int = 16):
    """λ (units Ω) and its standard error for the model's orbits at θ: the first ``n_fields``
    realisations, ``n_orbits`` pixel directions each, averaged over ΩT = max(T, 30)."""
    values = plane_wave_values(jnp.asarray(theta, dtype=float))
    model = model.resolved(values)
    sky = model.sky_model(values)
    fields = sample_fields(sky, realisation_keys(model.seed, min(n_fields, model.n_realisations)))
    dirs = sky.directions
    dirs = dirs[np.linspace(0, dirs.shape[0] - 1, min(n_orbits, dirs.shape[0])).astype(int)]
    est = lyapunov_exponent(fields, dirs, max(model.time, 30.0), dt=float(model.dt or 0.0))
    return float(est.exponent), float(est.stderr)


class GradientEstimator(eqx.Module):
    """How d⟨C_ℓ⟩/dθ is estimated (module docstring); ``step`` in ln θ where it applies."""

    step: float = 0.2

    def __check_init__(self):
        _checks.check_positive("step", self.step)


class Pathwise(GradientEstimator):
    """Forward-mode AD through the solver (exact for short T, chaotic beyond λT ~ a few)."""


class CRN(GradientEstimator):
    """Common-random-number central differences with step ``step`` in ln θ."""


class SPSA(GradientEstimator):
    """Simultaneous perturbation with Rademacher directions drawn from ``seed``."""

    seed: int = 1


class Score(GradientEstimator):
    """Score function over Gaussian amplitudes for ln σ² (CRN with ``step`` for ln ρ)."""


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


def _per_realisation_jacobian(estimator: GradientEstimator, theta, model: SpectrumModel, s0):
    """(R, L, P) per-realisation Jacobians and the method of each column."""
    R, P, h = s0.shape[0], 2, estimator.step
    if isinstance(estimator, Pathwise):
        per = jax.jacfwd(lambda th: realisation_spectra(th, model, adjoint=diffrax.ForwardMode()))(theta)
        return per, ("pathwise", "pathwise")
    if isinstance(estimator, SPSA):
        delta = jax.random.rademacher(jax.random.key(estimator.seed), (R, P)).astype(float)
        diff = spectra_at(theta + h * delta, model) - spectra_at(theta - h * delta, model)
        return (diff / (2 * h))[:, :, None] * delta[:, None, :], ("spsa", "spsa")
    cols = []
    for j in range(P):
        e = jnp.zeros(P).at[j].set(h)
        cols.append((realisation_spectra(theta + e, model) - realisation_spectra(theta - e, model)) / (2 * h))
    per = jnp.stack(cols, axis=-1)
    if isinstance(estimator, Score):
        score = score_terms(model)  # (R,)
        loo = (s0.sum(0)[None] - s0) / (R - 1)  # leave-one-out baseline
        return per.at[:, :, 0].set((s0 - loo) * score[:, None]), ("score", "crn")
    return per, ("crn", "crn")


def estimate_gradient(
    theta, model: SpectrumModel, estimator: GradientEstimator | None = None, *, lyapunov: bool = True
) -> GradientEstimate:
    """Estimate ⟨C_ℓ⟩(θ), its SE and the Jacobian d⟨C_ℓ⟩/dθ with ``estimator`` (default ``CRN()``).

    θ = (ln σ², ln ρ). With ``lyapunov`` (default) the maximal Lyapunov exponent of the model's
    orbits at θ is measured too and reported beside the estimate; a pathwise estimate with λT
    above ``PATHWISE_MAX_GROWTH`` raises a warning that it is dominated by chaos.
    """
    _checks.require_x64("estimate_gradient")
    estimator = CRN() if estimator is None else estimator
    if not isinstance(estimator, GradientEstimator):
        raise TypeError(f"estimator must be Pathwise(), CRN(step), SPSA(step, seed) or Score(step); got {estimator!r}")
    if not isinstance(model, SpectrumModel) or not isinstance(model.turbulence, PlaneWaveGJ99):
        raise TypeError("model must be a SpectrumModel of the plane-wave model (PlaneWaveGJ99)")
    theta = jnp.asarray(theta, dtype=float)
    if theta.shape != (2,):
        raise ValueError(f"theta must be (ln sigma2, ln rho), shape (2,); got {theta.shape}")
    _checks.check_finite("theta", theta)
    if isinstance(estimator, Score) and not model.turbulence.gaussian_amplitudes:
        raise ValueError(
            "the score-function estimator needs SpectrumModel(turbulence=PlaneWaveGJ99(gaussian_amplitudes=True))"
        )
    model = model.resolved(plane_wave_values(theta))
    t0 = _time.perf_counter()
    lam, lam_se = model_lyapunov(theta, model) if lyapunov else (float("nan"), float("nan"))
    if isinstance(estimator, Pathwise) and lam * model.time > PATHWISE_MAX_GROWTH:
        warnings.warn(
            f"pathwise gradient at λT = {lam * model.time:.1f} (λ = {lam:.3g} Ω, ΩT = {model.time:g}): "
            f"chaos amplifies it by ~e^{{λT}} = {np.exp(lam * model.time):.2g}; use CRN, SPSA or Score",
            stacklevel=2,
        )
    s0 = realisation_spectra(theta, model)  # (R, L)
    per, methods = _per_realisation_jacobian(estimator, theta, model, s0)
    per = np.asarray(per)
    if not np.all(np.isfinite(per)):
        raise FloatingPointError(
            f"non-finite Jacobian from the {type(estimator).__name__} estimator (pathwise "
            f"derivatives overflow when λT is large, here λT = {lam * model.time:.1f}: use CRN, "
            "SPSA or Score)"
        )
    mean, sem = mean_and_sem(s0)
    jac, jac_se = mean_and_sem(jnp.asarray(per))
    return GradientEstimate(
        theta=theta,
        mean_cl=mean,
        sem_cl=sem,
        covariance_cl=spectrum_covariance(s0),
        jacobian=jac,
        jacobian_stderr=jac_se,
        per_realisation_jacobian=jnp.asarray(per),
        methods=methods,
        wall_time_s=_time.perf_counter() - t0,
        lyapunov_exponent=lam,
        lyapunov_stderr=lam_se,
        time=float(model.time),
    )
