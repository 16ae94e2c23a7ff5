"""Fit the one sky an observatory measures, on an emulator artifact, in seconds.

The data: one observed spectrum Ĉ_ℓ (an :class:`jaxcr.observations.ObservedSpectrum`; the sky is
one realisation of the local turbulence) with its shot-noise level N and measurement errors σ_ℓ.
The model (an :class:`jaxcr.inference.artifact.EmulatorArtifact` of the same analysis): the
ensemble mean ⟨C_ℓ⟩(θ) of the unit-gradient sky and its cosmic variance, θ the coordinates of the
artifact's named parameters (σ² and ρ = r_L/λ_c for the paper's model). With the amplitude
a = (|∇n/n| r_L)², a single sky's spectrum is far from Gaussian: at low ℓ it scatters by ~100 %
about its mean with a long upper tail, and a sky that wanders far raises every multipole
together. The default likelihood is therefore log-normal
(:class:`~jaxcr.inference.likelihood.LogNormalSky`: Gaussian in ln(Ĉ_ℓ − N) with the covariance
of ln C_ℓ of single skies); :class:`~jaxcr.inference.likelihood.GaussianSky` is the same in C_ℓ.
On synthetic IceCube-like skies the Gaussian form covered the truth far less often than it
claimed (docs: "Fitting an observed sky"). a is fixed when the CR gradient is known
(``gradient_per_pc`` with B0, or ``amplitude``), a free parameter (``amplitude``) otherwise.

The fit itself is the one driver, :func:`jaxcr.inference.fit.maximise_likelihood`: best fit,
profile-likelihood intervals (Δ(−2 ln L) = 1 and 4) of every named parameter, χ² = rᵀΣ⁻¹r with
its degrees of freedom and p-value, the Fisher matrix and the directions the data do not narrow
to less than half the box (flagged), and the joint region of the artifact's two parameters
(:mod:`jaxcr.inference.joint_region`). Reported besides, with a free amplitude: the CR gradient
|∇n/n| in 1/pc (for the stated B0 and the spectrum's energy) and, for models with ρ, λ_c in pc.
"""

from __future__ import annotations

import time as _time
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .. import _checks, units
from ..field import as_option
from ..observations import ObservedSpectrum
from ..options import SkyScatter, SkyTails
from ..parametrisation import Parameter, Parametrisation, Transform
from .artifact import EmulatorArtifact
from .fit import FitOptions, LikelihoodFit, maximise_likelihood, start_grid
from .flags import calibration_toys, fit_warnings
from .joint_region import RegionThresholds, boxed_pair, joint_region, region_settings
from .likelihood import AbstractSkyLikelihood, GaussianSky, LikelihoodForm, LogNormalSky, OffsetLogNormalSky
from .results import FitResult, run_record

__all__ = [
    "sky_likelihood",
    "fit_sky",
    "start_log_amplitude",
    "candidate_starts",
    "tail_dof_for",
    "spectrum_record",
    "AMPLITUDE",
]

AMPLITUDE = Parameter("amplitude", 0.0, np.inf, Transform.LOG, units="", label="a = (|∇n/n| r_L)²")


def _fitted_multipoles(observed: ObservedSpectrum, artifact: EmulatorArtifact, ell_max):
    """Which of the spectrum's multipoles are fitted; errors that say what to change."""
    if not isinstance(observed, ObservedSpectrum):
        raise TypeError(
            f"observed must be an ObservedSpectrum (jaxcr.observations.load_spectrum); got {type(observed).__name__}"
        )
    if not isinstance(artifact, EmulatorArtifact):
        raise TypeError(
            f"artifact must be an EmulatorArtifact (EmulatorArtifact.load(path)); got {type(artifact).__name__}"
        )
    diff = artifact.analysis.mismatch(observed.analysis)
    if diff:
        raise ValueError(
            f"the spectrum was made by another analysis than the artifact's (spectrum against artifact: "
            f"{'; '.join(diff)}): build an artifact for this analysis (campaign analyses are set when the campaign "
            "is created)"
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


def noise_per_multipole(observed: ObservedSpectrum) -> np.ndarray:
    """N_ℓ, the noise's mean spectrum through the analysis: the isotropic band's mean where the file
    has one (ring-mean removal takes the noise's m = 0 part), else the flat noise level."""
    if observed.isotropic_mean is not None:
        return np.asarray(observed.isotropic_mean, dtype=float)
    return np.full(len(observed.ell), float(observed.noise_level))


AMPLITUDE_HALF_RANGE = 25.0  # e-folds of a free amplitude about the data's level: a box no sky reaches


def sky_likelihood(
    observed: ObservedSpectrum,
    artifact: EmulatorArtifact,
    *,
    amplitude: float | None = None,
    ell_max: int | None = None,
    form: LikelihoodForm | str = LikelihoodForm.LOGNORMAL,
    amplitude_name: str = AMPLITUDE.name,
    sky_scatter: SkyScatter | str = SkyScatter.POOLED,
    tails: SkyTails | str = SkyTails.GAUSSIAN,
    tail_dof: float | None = None,
) -> AbstractSkyLikelihood:
    """The likelihood of one observed spectrum on an artifact (module docstring): its parameters are
    the artifact's, and ``amplitude_name`` (ln a) when ``amplitude`` is not given.

    ``sky_scatter``: the covariance of one sky's ln C_ℓ inside the likelihood. POOLED (default):
    the design's mean; on an artifact that also holds each point's own (built with
    ``SkyScatter.LOCAL``), toys that calibrate intervals are drawn with that local one
    (:meth:`~jaxcr.inference.likelihood.AbstractSkyLikelihood.toy_blocks`). LOCAL: the local one in
    the likelihood too, which biases the estimates (docs/fitting.md; kept for such studies).

    ``tails``: GAUSSIAN (default) or STUDENT_T, a multivariate t of the same moments with ν =
    ``tail_dof`` (:func:`tail_dof_for`, :mod:`jaxcr.inference.tails`)."""
    keep = _fitted_multipoles(observed, artifact, ell_max)
    form_: LikelihoodForm = as_option(LikelihoodForm, "form", form)
    dof = tail_dof_for(form_, tails, tail_dof)
    scatter: SkyScatter = as_option(SkyScatter, "sky_scatter", sky_scatter)
    log_emulator = artifact.log_emulator
    if scatter == SkyScatter.LOCAL and (not log_emulator.local or form_ == LikelihoodForm.GAUSSIAN):
        raise ValueError(
            "sky_scatter='local' needs each design point's own covariance of ln C_ℓ: an artifact built with "
            "--sky-scatter local, and a log-normal form (lognormal or offset-lognormal)"
            + ("" if log_emulator.local else "; this artifact pools it")
        )
    toy_emulator = log_emulator if log_emulator.local and scatter == SkyScatter.POOLED else None
    if scatter == SkyScatter.POOLED:
        log_emulator = log_emulator.pooled()
    ell = np.asarray(observed.ell)[keep]
    noise = noise_per_multipole(observed)[keep]
    raw = np.asarray(observed.cl)[keep]
    o = raw - noise
    var = np.asarray(observed.sigma)[keep] ** 2
    names = artifact.parameters.names + (() if amplitude is not None else (amplitude_name,))
    rows = jnp.asarray(np.searchsorted(artifact.ells, ell))
    log_a = None if amplitude is None else jnp.asarray(np.log(amplitude))
    common: dict[str, Any] = dict(rows=rows, log_amplitude=log_a, log_amplitude_range=None, names=names, dof=dof)
    like: AbstractSkyLikelihood
    if form_ == LikelihoodForm.GAUSSIAN:
        like = GaussianSky(
            emulator=artifact.emulator, observed=jnp.asarray(o), variance=jnp.asarray(var), toy_emulator=None, **common
        )
    elif form_ == LikelihoodForm.OFFSET_LOGNORMAL:
        if np.any(raw <= 0):
            raise ValueError(
                f"Ĉ_ℓ ≤ 0 at ℓ = {ell[raw <= 0].tolist()}: the offset log-normal form takes the spectrum with its "
                "noise, which is positive (a synthetic spectrum with noise subtracted can fall below zero); use "
                "form='gaussian'"
            )
        noise_variance = observed.isotropic_sigma
        like = OffsetLogNormalSky(
            emulator=log_emulator,
            toy_emulator=toy_emulator,
            observed=jnp.asarray(np.log(raw)),
            variance=jnp.asarray(var / raw**2),
            noise=jnp.asarray(noise),
            noise_variance=None if noise_variance is None else jnp.asarray(np.asarray(noise_variance)[keep] ** 2),
            **common,
        )
    else:
        if np.any(o <= 0):
            raise ValueError(
                f"Ĉ_ℓ − N ≤ 0 at ℓ = {ell[o <= 0].tolist()}: the log-normal likelihood needs power above the noise "
                "level at every fitted ℓ; cut them with ell_max, or use form='offset-lognormal' (every ℓ) or 'gaussian'"
            )
        like = LogNormalSky(
            emulator=log_emulator,
            toy_emulator=toy_emulator,
            observed=jnp.asarray(np.log(o)),
            variance=jnp.asarray(var / o**2),
            **common,
        )
    if amplitude is not None:
        return like
    # a free amplitude's wide box: centred where the model meets the data at the box centre
    centre = start_log_amplitude(like, (artifact.parameters.coordinate_low + artifact.parameters.coordinate_high) / 2)
    return eqx.tree_at(
        lambda m: m.log_amplitude_range,
        like,
        jnp.asarray([centre, AMPLITUDE_HALF_RANGE]),
        is_leaf=lambda x: x is None,
    )


def tail_dof_for(form: LikelihoodForm, tails: SkyTails | str, tail_dof: float | None) -> float | None:
    """ν of a Student-t likelihood (``tails`` STUDENT_T, ``tail_dof`` ν > 2); None for Gaussian
    tails. Errors say what to pass."""
    tails_: SkyTails = as_option(SkyTails, "tails", tails)
    if tails_ == SkyTails.GAUSSIAN:
        if tail_dof is not None:
            raise ValueError(f"tail_dof = {tail_dof} is the ν of tails='student-t'; with Gaussian tails leave it out")
        return None
    if form == LikelihoodForm.GAUSSIAN:
        raise ValueError(
            "tails='student-t' describes the scatter of ln C_ℓ: use form='lognormal' or 'offset-lognormal'"
        )
    if tail_dof is None:
        raise ValueError(
            "tails='student-t' needs tail_dof, its ν > 2 (mock skies of the wide IceCube-like box give ν ≈ 17 "
            "about the model at their truth, nearly Gaussian: docs/fitting.md)"
        )
    value = float(tail_dof)
    if not (np.isfinite(value) and value > 2):
        raise ValueError(f"tail_dof must be a finite ν > 2 (the t's variance exists only for ν > 2); got {tail_dof}")
    return value


def start_log_amplitude(like: AbstractSkyLikelihood, theta) -> float:
    """ln a at θ to start a free-amplitude fit: the mean offset of ln(Ĉ − N) from the model
    (log-normal), or the least-squares amplitude (Gaussian)."""
    moments, _ = like.sky_moments(jnp.array([*theta, 0.0]))
    m, y = np.asarray(moments), np.asarray(like.observed)
    if isinstance(like, LogNormalSky | OffsetLogNormalSky):  # (for the offset form: the signal-dominated limit)
        return float(np.mean(y - m))
    return float(np.log(max(float(np.dot(m, y) / np.dot(m, m)), 1e-300)))


def candidate_starts(like, parameters: Parametrisation, box: Parametrisation, start, points: int) -> np.ndarray:
    """Candidate starts: a grid of ``points`` per parameter over the box, or the user's named start
    (checked to lie inside); with ln a from :func:`start_log_amplitude` where ``parameters`` add it."""
    if start is None:
        grid = start_grid(box, points)
    else:
        grid = box.coordinates(dict(start))[None]
        outside = box.outside(dict(start))
        if outside:
            raise ValueError(f"start lies outside the artifact's box: {'; '.join(outside)}")
    if len(parameters) > len(box):
        grid = np.array([[*t, start_log_amplitude(like, t)] for t in grid])
    return grid


def _derived(fit: LikelihoodFit, names, r_l_pc: float, amplitude: float | None):
    """The physical quantities beside the fitted ones: a, |∇n/n| r_L, |∇n/n| in 1/pc, λ_c in pc
    (models with ρ = r_L/λ_c), r_L in pc; their intervals where they follow from a fitted one."""
    a = fit.values[AMPLITUDE.name] if amplitude is None else amplitude
    values = dict(fit.values) | dict(
        amplitude=a,
        gradient_times_larmor_radius=float(np.sqrt(a)),
        gradient_per_pc=float(np.sqrt(a) / r_l_pc),
        larmor_radius_pc=r_l_pc,
    )
    intervals = dict(fit.intervals)
    if amplitude is None:
        intervals["gradient_per_pc"] = {
            lvl: (np.sqrt(lo) / r_l_pc, np.sqrt(hi) / r_l_pc, c_lo, c_hi)
            for lvl, (lo, hi, c_lo, c_hi) in fit.intervals[AMPLITUDE.name].items()
        }
    if "rho" in names:
        values["lambda_c_pc"] = float(r_l_pc / fit.values["rho"])
        intervals["lambda_c_pc"] = {
            lvl: (r_l_pc / hi, r_l_pc / lo, c_hi, c_lo) for lvl, (lo, hi, c_lo, c_hi) in fit.intervals["rho"].items()
        }
    return values, intervals


def spectrum_record(spectrum: ObservedSpectrum, artifact: EmulatorArtifact, keep, band) -> dict:
    """What a result records of one fitted spectrum: ℓ, Ĉ_ℓ − N_ℓ (the noise the likelihood takes,
    :func:`noise_per_multipole`), σ_ℓ, the best-fit model and its one-sky band (``band`` = (centre,
    low, high)), the spectrum's metadata and the artifact's provenance."""
    model, low, high = (np.asarray(v) for v in band)
    return dict(
        ell=np.asarray(spectrum.ell)[keep],
        data=(np.asarray(spectrum.cl) - noise_per_multipole(spectrum))[keep],
        data_sigma=np.asarray(spectrum.sigma)[keep],
        model=model,
        model_band=np.stack([low, high]),
        spectrum=spectrum.metadata(),
        artifact=dict(
            version=artifact.version,
            time=artifact.time,
            time_in_separation_times=artifact.separation_times,
            analysis=artifact.analysis.as_dict(),
            parameters=artifact.parameters.as_dict(),
            campaign_digest=artifact.provenance.get("campaign", {}).get("digest"),
            converged=artifact.provenance.get("convergence", {}).get("converged"),
        ),
    )


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
    sky_scatter: SkyScatter | str = SkyScatter.POOLED,
    tails: SkyTails | str = SkyTails.GAUSSIAN,
    tail_dof: float | None = None,
    options: FitOptions = FitOptions(),
    region_thresholds: RegionThresholds | None = None,
    progress: bool = True,
) -> FitResult:
    """Fit the artifact's named parameters (and the amplitude, if not known) to one observed sky.

    Args:
        gradient_per_pc: the CR gradient |∇n/n| in 1/pc, if known (sets a = (|∇n/n| r_L)² with
            r_L from the spectrum's energy, ``b0_microgauss`` and ``charge``).
        amplitude: or a = (|∇n/n| r_L)² directly. Neither: a is fitted and reported as the
            gradient in 1/pc (for the stated B0).
        start: named values to start from, e.g. {"sigma2": 1, "rho": 0.1} (default: the best point
            of a grid over the box, ``options.start_points`` per parameter).
        ell_max: fit only ℓ ≤ ell_max (reported); without it every ℓ of the spectrum must be in the artifact.
        form: LOGNORMAL (default; Gaussian in ln C_ℓ, needs Ĉ_ℓ − N > 0), OFFSET_LOGNORMAL (ln Ĉ_ℓ
            with the noise in the model; every ℓ) or GAUSSIAN (in C_ℓ).
        sky_scatter: the covariance of one sky's ln C_ℓ in the likelihood (:func:`sky_likelihood`):
            POOLED (default; calibrated intervals then draw their toys from the artifact's local
            covariance where it has one) or LOCAL.
        tails, tail_dof: GAUSSIAN (default) or STUDENT_T tails of one sky's ln C_ℓ, with ν =
            ``tail_dof`` (:func:`sky_likelihood`).
        options: how the driver runs (:class:`jaxcr.inference.fit.FitOptions`).
        region_thresholds: critical values of the joint region of the artifact's two parameters,
            calibrated on a campaign's realisations for this artifact and these settings; default
            χ²₂'s (:mod:`jaxcr.inference.joint_region`; reported in ``joint_region``).
    """
    t0 = _time.perf_counter()
    _checks.require_x64("fit_sky")
    if gradient_per_pc is not None and amplitude is not None:
        raise ValueError("give gradient_per_pc or amplitude, not both")
    _checks.check_positive("b0_microgauss", b0_microgauss)
    _checks.check_positive("charge", charge)
    if not isinstance(options, FitOptions):
        raise TypeError(f"options must be a FitOptions; got {type(options).__name__}")
    r_l_pc = float(units.larmor_radius_pc(observed.energy_tev, b0_microgauss, charge))
    if gradient_per_pc is not None:
        _checks.check_positive("gradient_per_pc", gradient_per_pc)
        amplitude = (float(gradient_per_pc) * r_l_pc) ** 2
    if amplitude is not None:
        _checks.check_positive("amplitude", amplitude)
    scatter: SkyScatter = as_option(SkyScatter, "sky_scatter", sky_scatter)
    like = sky_likelihood(
        observed,
        artifact,
        amplitude=amplitude,
        ell_max=ell_max,
        form=form,
        sky_scatter=scatter,
        tails=tails,
        tail_dof=tail_dof,
    )
    keep = np.isin(observed.ell, artifact.ells[np.asarray(like.rows)])  # the multipoles it fits
    box = artifact.parameters
    parameters = box if amplitude is not None else Parametrisation(box.parameters + (AMPLITUDE,))
    if region_thresholds is not None:
        if boxed_pair(parameters) is None:
            raise ValueError(f"region_thresholds need an artifact of two parameters; this one has {list(box.names)}")
        region_thresholds.check_matches(region_settings(artifact, like, form, scatter, amplitude is None))
    starts = candidate_starts(like, parameters, box, start, options.start_points)
    fit = maximise_likelihood(like, parameters, starts, options, progress="fit (one sky)" if progress else None)
    region = None
    if boxed_pair(parameters) is not None:
        region = joint_region(like, parameters, fit.phi, fit.m2lnl, thresholds=region_thresholds, options=options)
    values, intervals = _derived(fit, box.names, r_l_pc, amplitude)
    toys = calibration_toys(like, options)
    flags = fit.flags + fit_warnings(artifact, fit, box, scatter, toys == "local")
    return FitResult.from_fit(
        fit,
        joint_region=region,
        names=parameters.names,
        parameters=values,
        intervals=intervals,
        flags=flags,
        spectra=[spectrum_record(observed, artifact, keep, like.spectrum_band(jnp.asarray(fit.phi)))],
        settings=dict(
            gradient_per_pc=gradient_per_pc,
            amplitude=amplitude,
            amplitude_free=amplitude is None,
            b0_microgauss=b0_microgauss,
            charge=charge,
            start=start,
            ell_max=ell_max,
            ell_cut=np.asarray(observed.ell)[~keep].tolist(),
            form=as_option(LikelihoodForm, "form", form).value,
            sky_scatter=scatter.value,
            toys=toys,
            tails=as_option(SkyTails, "tails", tails).value,
            tail_dof=like.dof,
        )
        | options.record()
        | run_record(),
        wall_time_s=_time.perf_counter() - t0,
    )
