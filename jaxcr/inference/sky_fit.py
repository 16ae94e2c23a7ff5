"""Fit the one sky an observatory measures, on an emulator artifact, in seconds.

The data: one observed spectrum Ĉ_ℓ (an :class:`jaxcr.observations.ObservedSpectrum`; the sky is
one realisation of the local turbulence) with its shot-noise level N and measurement errors σ_ℓ.
The model (an :class:`jaxcr.inference.artifact.EmulatorArtifact` of the same analysis): the
ensemble mean ⟨C_ℓ⟩(θ) of the unit-gradient sky and its cosmic variance S(θ), the ℓ-ℓ'
covariance of single skies about that mean (the emulator's own error included), θ = (ln σ², ln ρ).
With the amplitude a = (|∇n/n| r_L)², a single sky's spectrum is far from Gaussian: at low ℓ it
scatters by ~100 % about its mean with a long upper tail, and a sky that wanders far raises every
multipole together. The default likelihood (``LikelihoodForm.LOGNORMAL``) is therefore Gaussian in
y_ℓ = ln(Ĉ_ℓ − N), with the mean ln a + ⟨ln C_ℓ⟩(θ) and the covariance Λ of ln C_ℓ of single skies
(from the realisations, correlated across ℓ) plus the measurement errors (σ_ℓ/(Ĉ_ℓ − N))²:

    −2 ln L(θ, a) = rᵀ Σ⁻¹ r + ln det Σ,   r = y − ln a − ⟨ln C⟩(θ),   Σ = Λ(θ) + diag(σ_ℓ²/(Ĉ_ℓ − N)²).

``LikelihoodForm.GAUSSIAN`` is the same in C_ℓ itself: r = Ĉ − N − a⟨C⟩(θ), Σ = a² S(θ) + diag(σ_ℓ²).
The determinant is kept in both: where Σ grows with the model (GAUSSIAN), leaving it out would
favour a larger model (larger σ²) simply because it claims larger errors. On synthetic IceCube-like
skies the GAUSSIAN form covered the truth far less often than it claimed (docs: "Fitting an
observed sky"). a is fixed when the CR gradient is known (``gradient_per_pc`` with B0, or
``amplitude``), a free parameter otherwise.

Reported: the best fit and profile-likelihood intervals (Δ(−2 ln L) = 1 and 4) of σ², ρ = r_L/λ_c
and, with a free amplitude, of the CR gradient |∇n/n| (1/pc, for the stated B0 and energy) and
λ_c (pc); χ² = rᵀΣ⁻¹r with its degrees of freedom and p-value; the Fisher matrix and, for each of
its eigen-directions, the ratio of its 1σ width to the prior (design box) range along it:
directions the data do not narrow to less than half the box are flagged poorly constrained,
whatever the profile intervals say; the best-fit model spectrum with its cosmic-variance band.
"""

from __future__ import annotations

import enum
import time as _time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks, units
from .._version import __version__
from ..field import as_option
from ..observations import ObservedSpectrum
from .artifact import EmulatorArtifact
from .campaign import software_versions
from .emulator import SpectrumEmulator, box_grid, lbfgs_minimise
from .fisher import POORLY_CONSTRAINED, directions_against_prior
from .profile import level_interval
from .results import SkyFitResult

__all__ = ["LikelihoodForm", "SkyLikelihood", "fit_sky", "POORLY_CONSTRAINED"]

_BARRIER = 1e4  # −2 ln L penalty per (|z| − 1)² outside the design box (the emulator does not extrapolate)


class LikelihoodForm(enum.StrEnum):
    """The distribution of one sky's spectrum: LOGNORMAL (Gaussian in ln C_ℓ, the default) or
    GAUSSIAN (Gaussian in C_ℓ). Module docstring."""

    LOGNORMAL = "lognormal"
    GAUSSIAN = "gaussian"


class SkyLikelihood(eqx.Module):
    """−2 ln L of one observed spectrum on an emulator artifact (module docstring).

    ``phi`` = (ln σ², ln ρ) with the amplitude fixed, or (ln σ², ln ρ, ln a) with it free.
    ``observed`` and ``variance`` are Ĉ_ℓ − N and σ_ℓ² (GAUSSIAN) or ln(Ĉ_ℓ − N) and
    (σ_ℓ/(Ĉ_ℓ − N))² (LOGNORMAL); ``emulator`` is the artifact's emulator of that form."""

    emulator: SpectrumEmulator
    observed: jax.Array
    variance: jax.Array
    rows: jax.Array  # indices of the fitted ℓ among the artifact's ells
    log_amplitude: jax.Array | None  # fixed ln a, or None (free)
    form: LikelihoodForm = eqx.field(static=True, default=LikelihoodForm.LOGNORMAL)

    def split(self, phi):
        theta = phi[:2]
        log_a = phi[2] if self.log_amplitude is None else self.log_amplitude
        return theta, log_a

    def moments(self, phi):
        """Mean and covariance of the fitted quantity (C_ℓ − N or ln(C_ℓ − N)) at φ, without the
        measurement errors."""
        theta, log_a = self.split(phi)
        rows = self.rows
        if self.form == LikelihoodForm.LOGNORMAL:
            return log_a + self.emulator.log_mean(theta)[rows], self.emulator.log_covariance(theta, 1)[rows][:, rows]
        a = jnp.exp(log_a)
        return a * self.emulator.mean(theta)[rows], a**2 * self.emulator.sky_covariance(theta, 1)[rows][:, rows]

    def terms(self, phi):
        """(−2 ln L, χ², box penalty)."""
        mean, sky = self.moments(phi)
        chol = jnp.linalg.cholesky(sky + jnp.diag(self.variance))
        w = jax.scipy.linalg.solve_triangular(chol, self.observed - mean, lower=True)
        chi2 = jnp.dot(w, w)
        z = jnp.abs(self.emulator.box_coordinates(phi[:2]))
        penalty = _BARRIER * jnp.sum(jnp.maximum(z - 1.0, 0.0) ** 2)
        return chi2 + 2 * jnp.sum(jnp.log(jnp.diag(chol))), chi2, penalty

    def objective(self, phi):
        m2lnl, _, penalty = self.terms(phi)
        return m2lnl + penalty

    def model(self, phi):
        """The best-fit model spectrum and its one-sky band (centre, low, high) on the fitted ℓ:
        a⟨C_ℓ⟩ ± a·sqrt(diag S) (GAUSSIAN), or the median a·exp⟨ln C_ℓ⟩ times exp(±1σ) (LOGNORMAL)."""
        mean, sky = self.moments(phi)
        sd = jnp.sqrt(jnp.diag(sky))
        if self.form == LikelihoodForm.LOGNORMAL:
            return jnp.exp(mean), jnp.exp(mean - sd), jnp.exp(mean + sd)
        return mean, mean - sd, mean + sd


@eqx.filter_jit
def _grid_values(like: SkyLikelihood, grid):
    return jax.vmap(like.objective)(grid)


@eqx.filter_jit
def _minimum(like: SkyLikelihood, x0, fixed, value):
    """(φ, −2 ln L, max |z|) at the minimum from x0 with the components where ``fixed`` held at
    ``value`` (a profile point; none fixed for the best fit). One compilation serves all."""
    insert = lambda p: jnp.where(fixed, value, p)
    phi = insert(lbfgs_minimise(lambda p: like.objective(insert(p)), x0))
    m2lnl, _, _ = like.terms(phi)
    z = jnp.max(jnp.abs(like.emulator.box_coordinates(phi[:2])))
    return phi, m2lnl, z


@eqx.filter_jit
def _hessian(like: SkyLikelihood, phi):
    return jax.hessian(lambda p: like.terms(p)[0])(phi)


def _start_log_amplitude(like: SkyLikelihood, theta) -> float:
    """ln a at θ to start a free-amplitude fit: the mean offset of ln(Ĉ − N) from the model
    (LOGNORMAL), or the least-squares amplitude (GAUSSIAN)."""
    m, _ = like.moments(jnp.array([*theta, 0.0]))
    m, y = np.asarray(m), np.asarray(like.observed)
    if like.form == LikelihoodForm.LOGNORMAL:
        return float(np.mean(y - m))
    return float(np.log(max(float(np.dot(m, y) / np.dot(m, m)), 1e-300)))


def _check_fit_inputs(observed, artifact, ell_max):
    if not isinstance(observed, ObservedSpectrum):
        raise TypeError(
            f"observed must be an ObservedSpectrum (jaxcr.observations.load_spectrum); got {type(observed).__name__}"
        )
    if not isinstance(artifact, EmulatorArtifact):
        raise TypeError(
            f"artifact must be an EmulatorArtifact (EmulatorArtifact.load(path)); got {type(artifact).__name__}"
        )
    diff = artifact.analysis.mismatch(observed)
    if diff:
        raise ValueError(
            f"the spectrum was made by another analysis than the artifact's ({'; '.join(diff)}): build an artifact "
            "for this analysis (campaign analyses are set when the campaign is created)"
        )
    ell = np.asarray(observed.ell)
    keep = np.ones(len(ell), dtype=bool) if ell_max is None else ell <= _checks.check_positive_int("ell_max", ell_max)
    outside = ~np.isin(ell, artifact.ells) & keep
    if outside.any():
        raise ValueError(
            f"ℓ = {ell[outside].tolist()} of the spectrum are not in the artifact's ℓ = {artifact.ells[0]}..{artifact.ells[-1]}: "
            f"pass ell_max (an explicit, reported cut) or build an artifact that reaches them (higher campaign nside)"
        )
    if keep.sum() < 3:
        raise ValueError(f"a fit needs at least 3 multipoles; the spectrum has {int(keep.sum())} with ℓ ≤ {ell_max}")
    return keep


def fit_sky(
    observed: ObservedSpectrum,
    artifact: EmulatorArtifact,
    *,
    gradient_per_pc: float | None = None,
    amplitude: float | None = None,
    b0_microgauss: float = 3.0,
    charge: float = 1.0,
    start: dict | None = None,
    ell_max: int | None = None,
    form: LikelihoodForm | str = LikelihoodForm.LOGNORMAL,
    profile_points: int = 41,
    progress: bool = True,
) -> SkyFitResult:
    """Fit σ² and ρ = r_L/λ_c (and the amplitude, if not known) to one observed sky (module docstring).

    Args:
        gradient_per_pc: the CR gradient |∇n/n| in 1/pc, if known (sets a = (|∇n/n| r_L)² with
            r_L from the spectrum's energy, ``b0_microgauss`` and ``charge``).
        amplitude: or a = (|∇n/n| r_L)² directly. Neither: a is fitted and reported as the
            gradient in 1/pc (for the stated B0).
        start: {"sigma2", "rho"} to start from (default: the best point of a 9×9 grid over the box).
        ell_max: fit only ℓ ≤ ell_max (reported); without it every ℓ of the spectrum must be in the artifact.
        form: LOGNORMAL (default; Gaussian in ln C_ℓ, needs Ĉ_ℓ − N > 0) or GAUSSIAN (in C_ℓ).
        profile_points: points per profile likelihood.
    """
    from scipy import stats
    from tqdm.auto import tqdm

    t0 = _time.perf_counter()
    _checks.require_x64("fit_sky")
    keep = _check_fit_inputs(observed, artifact, ell_max)
    if gradient_per_pc is not None and amplitude is not None:
        raise ValueError("give gradient_per_pc or amplitude, not both")
    _checks.check_positive("b0_microgauss", b0_microgauss)
    _checks.check_positive("charge", charge)
    r_l_pc = float(units.larmor_radius_pc(observed.energy_tev, b0_microgauss, charge))
    if gradient_per_pc is not None:
        _checks.check_positive("gradient_per_pc", gradient_per_pc)
        amplitude = (float(gradient_per_pc) * r_l_pc) ** 2
    if amplitude is not None:
        _checks.check_positive("amplitude", amplitude)
    _checks.check_positive_int("profile_points", profile_points)
    ell = np.asarray(observed.ell)[keep]
    rows = np.searchsorted(artifact.ells, ell)
    form_: LikelihoodForm = as_option(LikelihoodForm, "form", form)
    o = np.asarray(observed.cl)[keep] - observed.noise_level
    var = np.asarray(observed.sigma)[keep] ** 2
    if form_ == LikelihoodForm.LOGNORMAL:
        if np.any(o <= 0):
            raise ValueError(
                f"Ĉ_ℓ − N ≤ 0 at ℓ = {ell[o <= 0].tolist()}: the log-normal likelihood needs power above the noise "
                "level at every fitted ℓ; cut them with ell_max, or use form='gaussian'"
            )
        y, y_var, emu = np.log(o), var / o**2, artifact.log_emulator
    else:
        y, y_var, emu = o, var, artifact.emulator
    like = SkyLikelihood(
        emulator=emu,
        observed=jnp.asarray(y),
        variance=jnp.asarray(y_var),
        rows=jnp.asarray(rows),
        log_amplitude=None if amplitude is None else jnp.asarray(np.log(amplitude)),
        form=form_,
    )
    free_amp = amplitude is None
    names = ("sigma2", "rho") + (("amplitude",) if free_amp else ())
    centre = (artifact.theta_low + artifact.theta_high) / 2
    half = (artifact.theta_high - artifact.theta_low) / 2
    bar = tqdm(total=2 + 2 * len(names), disable=not progress, desc="fit (one sky)", unit="stage")
    # start: the best of a 9×9 grid over the box (the amplitude at its GLS value), or the user's
    if start is None:
        grid = box_grid(centre, half, 9)
    else:
        for key in ("sigma2", "rho"):
            if key not in start:
                raise ValueError(f"start must give sigma2 and rho; missing {key!r}")
            _checks.check_positive(f"start[{key!r}]", start[key])
        grid = np.log([[start["sigma2"], start["rho"]]])
        z = np.abs((grid[0] - centre) / half)
        if np.any(z > 1):
            raise ValueError(
                f"start σ² = {start['sigma2']}, ρ = {start['rho']} lies outside the artifact's box "
                f"σ² ∈ [{np.exp(artifact.theta_low[0]):.3g}, {np.exp(artifact.theta_high[0]):.3g}], "
                f"ρ ∈ [{np.exp(artifact.theta_low[1]):.3g}, {np.exp(artifact.theta_high[1]):.3g}]"
            )
    if free_amp:
        grid = np.array([[*t, _start_log_amplitude(like, t)] for t in grid])
    values = np.asarray(_grid_values(like, jnp.asarray(grid)))
    bar.update(1)
    none_fixed = jnp.zeros(len(names), dtype=bool)
    phi, m2lnl, _ = _minimum(like, jnp.asarray(grid[int(np.nanargmin(values))]), none_fixed, jnp.asarray(0.0))
    best = float(m2lnl)
    bar.update(1)
    # profile likelihoods: each parameter on a grid, the others minimised, outward from the best fit
    fisher = 0.5 * np.asarray(_hessian(like, phi))
    cov = np.linalg.pinv(fisher)
    profiles, intervals, lowest = {}, {}, (best, phi)
    for i, name in enumerate(names):
        if i < 2:  # σ², ρ: across the whole box (an interval that reaches its edge is open there)
            x = np.linspace(artifact.theta_low[i], artifact.theta_high[i], profile_points)
        else:  # ln a: ±4σ (Fisher) around the best fit, at least ±0.5 e-folds
            sd = np.sqrt(cov[i, i]) if cov[i, i] > 0 else np.inf
            reach = min(max(4.0 * sd, 0.5), 10.0) if np.isfinite(sd) else 10.0
            x = float(phi[i]) + reach * np.linspace(-1.0, 1.0, profile_points)
        prof = np.empty(len(x))
        fixed = jnp.arange(len(names)) == i
        k0 = int(np.argmin(np.abs(x - float(phi[i]))))
        for order in (range(k0, len(x)), range(k0 - 1, -1, -1)):
            start_phi = phi
            for j in order:
                start_phi, val, _ = _minimum(like, start_phi, fixed, jnp.asarray(float(x[j])))
                prof[j] = float(val)
                if prof[j] < lowest[0] - 1e-9:  # a profile found a lower point than the polished start
                    lowest = (prof[j], start_phi)
            bar.update(1)
        profiles[name] = dict(log_value=x.tolist(), m2lnl=prof.tolist())
    if lowest[0] < best:  # the best fit is the lowest point seen, polished with every parameter free
        phi, m2lnl, _ = _minimum(like, lowest[1], none_fixed, jnp.asarray(0.0))
        best = min(float(m2lnl), lowest[0])
        fisher = 0.5 * np.asarray(_hessian(like, phi))
    for name in names:
        x, prof = np.asarray(profiles[name]["log_value"]), np.asarray(profiles[name].pop("m2lnl"))
        profiles[name]["delta_m2lnl"] = (prof - best).tolist()
        intervals[name] = {lvl: level_interval(x, prof - best, level) for lvl, level in (("68", 1.0), ("95", 4.0))}
    bar.close()
    theta, log_a = like.split(phi)
    chi2 = float(like.terms(phi)[1])
    dof = int(len(ell) - len(names))
    a = float(np.exp(log_a))
    parameters = dict(
        sigma2=float(np.exp(theta[0])),
        rho=float(np.exp(theta[1])),
        amplitude=a,
        gradient_times_larmor_radius=float(np.sqrt(a)),
        gradient_per_pc=float(np.sqrt(a) / r_l_pc),
        lambda_c_pc=float(r_l_pc / np.exp(theta[1])),
        larmor_radius_pc=r_l_pc,
    )
    if free_amp:
        for lvl in ("68", "95"):
            lo, hi, c_lo, c_hi = intervals["amplitude"][lvl]
            intervals.setdefault("gradient_per_pc", {})[lvl] = (np.sqrt(lo) / r_l_pc, np.sqrt(hi) / r_l_pc, c_lo, c_hi)
    for lvl in ("68", "95"):
        lo, hi, c_lo, c_hi = intervals["rho"][lvl]
        intervals.setdefault("lambda_c_pc", {})[lvl] = (r_l_pc / hi, r_l_pc / lo, c_hi, c_lo)
    directions, flags = directions_against_prior(fisher, half, free_amp, POORLY_CONSTRAINED)
    for name in ("sigma2", "rho"):
        lo, hi, c_lo, c_hi = intervals[name]["68"]
        if not (c_lo and c_hi):
            flags.append(
                f"{name}: the 68 % interval [{lo:.3g}, {hi:.3g}] reaches the edge of the artifact's box (open)"
            )
    model, low, high = (np.asarray(v) for v in like.model(phi))
    return SkyFitResult(
        parameters=parameters,
        intervals=intervals,
        fisher=fisher,
        names=names,
        chi2=chi2,
        dof=dof,
        p_value=float(stats.chi2.sf(chi2, dof)) if dof > 0 else float("nan"),
        m2lnl=best,
        directions=directions,
        flags=flags,
        ell=ell,
        data=o,
        data_sigma=np.sqrt(var),
        model=model,
        model_band=np.stack([low, high]),
        settings=dict(
            gradient_per_pc=gradient_per_pc,
            amplitude=None if free_amp else amplitude,
            amplitude_free=free_amp,
            b0_microgauss=b0_microgauss,
            charge=charge,
            start=start,
            ell_max=ell_max,
            ell_cut=np.asarray(observed.ell)[~keep].tolist(),
            form=form_.value,
            profile_points=profile_points,
            jaxcr=__version__,
            versions=software_versions(),
            date=_time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        ),
        artifact=dict(
            version=artifact.version,
            time=artifact.time,
            analysis=artifact.analysis.as_dict(),
            theta_low=artifact.theta_low,
            theta_high=artifact.theta_high,
            campaign_digest=artifact.provenance.get("campaign", {}).get("digest"),
        ),
        spectrum=observed.metadata(),
        profiles=profiles,
        wall_time_s=_time.perf_counter() - t0,
    )
