"""Several observed spectra in one fit: energies (and observatories) that share the turbulence.

Spectra at energies E_k see the same turbulence level σ² and coherence length λ_c, while each has
its own Larmor radius r_L(E_k, B0) and so its own ρ_k = r_L(E_k)/λ_c: in the coordinates of an
artifact of the paper's model, ln ρ_k = ln r_L(E_k) − ln λ_c. Each spectrum's one-sky likelihood
(:func:`jaxcr.inference.sky_fit.sky_likelihood`, on the artifact of its analysis) is written in the
joint parameters φ = (ln σ², ln λ_c[pc], ln a_k …) by :class:`~jaxcr.inference.likelihood.Reparametrised`
and their sum is a :class:`~jaxcr.inference.likelihood.JointLikelihood`; the one driver
(:func:`~jaxcr.inference.fit.maximise_likelihood`) fits it. The amplitude a_k = (|∇n/n| r_L(E_k))²
of each spectrum is free (``amplitude_<k>``), or fixed by a known gradient. The boxes: σ² where every
artifact has it; λ_c where every spectrum's ρ_k lies inside its artifact's box.
"""

from __future__ import annotations

import time as _time

import jax.numpy as jnp
import numpy as np

from .. import _checks, units
from ..observations import ObservedSpectrum
from ..options import SkyTails
from ..parametrisation import RHO, SIGMA2, Parameter, Parametrisation, Transform
from .artifact import EmulatorArtifact
from .fit import FitOptions, maximise_likelihood, start_grid
from .flags import calibration_toys, fit_warnings, point_scatter_warning
from .likelihood import AbstractSkyLikelihood, JointLikelihood, LikelihoodForm, Reparametrised
from .results import FitResult, run_record
from .sky_fit import (
    sky_likelihood,
    spectrum_record,
    start_log_amplitude,
)

__all__ = ["fit_skies", "joint_sky_likelihood", "LAMBDA_C"]

LAMBDA_C = "lambda_c_pc"


def _joint_box(artifacts, r_l_pc) -> Parametrisation:
    """σ² and λ_c (pc) where every spectrum's (σ², ρ_k) lies inside its artifact's box."""
    for a in artifacts:
        if a.parameters.names != (SIGMA2, RHO):
            raise ValueError(f"joint fits need artifacts of (sigma2, rho); got {list(a.parameters.names)}")
    s_lo = max(a.parameters[SIGMA2].low for a in artifacts)
    s_hi = min(a.parameters[SIGMA2].high for a in artifacts)
    l_lo = max(r / a.parameters[RHO].high for a, r in zip(artifacts, r_l_pc))
    l_hi = min(r / a.parameters[RHO].low for a, r in zip(artifacts, r_l_pc))
    if not (s_lo < s_hi and l_lo < l_hi):
        raise ValueError(
            f"the artifacts' boxes leave no common (σ², λ_c): σ² ∈ [{s_lo:.3g}, {s_hi:.3g}], λ_c ∈ [{l_lo:.3g}, "
            f"{l_hi:.3g}] pc (r_L = {', '.join(f'{r:.3g}' for r in r_l_pc)} pc); the energies are too far apart "
            "for the artifacts' ρ ranges: build artifacts whose ρ boxes overlap in λ_c"
        )
    return Parametrisation(
        (
            Parameter(SIGMA2, s_lo, s_hi, Transform.LOG, label="σ²"),
            Parameter(LAMBDA_C, l_lo, l_hi, Transform.LOG, units="pc", label="λ_c [pc]"),
        )
    )


def joint_sky_likelihood(
    spectra: list[ObservedSpectrum],
    artifacts: list[EmulatorArtifact],
    *,
    gradient_per_pc: float | None = None,
    b0_microgauss: float = 3.0,
    charge: float = 1.0,
    form: LikelihoodForm | str = LikelihoodForm.LOGNORMAL,
    tails: SkyTails | str = SkyTails.GAUSSIAN,
    tail_dof: float | None = None,
) -> tuple[JointLikelihood, Parametrisation, Parametrisation, list[float]]:
    """The joint likelihood of several spectra (module docstring) in φ = (ln σ², ln λ_c[pc], ln a_k
    …), with its parameters (the box and, when the gradient is free, one amplitude per spectrum), the
    box of (σ², λ_c) alone and the Larmor radii r_L(E_k) in pc. ``tails``/``tail_dof`` as for
    :func:`~jaxcr.inference.sky_fit.sky_likelihood`, the same for every spectrum."""
    spectra, artifacts = list(spectra), list(artifacts)
    if len(spectra) < 2 or len(spectra) != len(artifacts):
        raise ValueError(
            f"give >= 2 spectra and one artifact each; got {len(spectra)} spectra, {len(artifacts)} artifacts"
        )
    _checks.check_positive("b0_microgauss", b0_microgauss)
    _checks.check_positive("charge", charge)
    if gradient_per_pc is not None:
        _checks.check_positive("gradient_per_pc", gradient_per_pc)
    r_l = [float(units.larmor_radius_pc(s.energy_tev, b0_microgauss, charge)) for s in spectra]
    box = _joint_box(artifacts, r_l)
    members, amplitudes = [], []
    for k, (spec, art) in enumerate(zip(spectra, artifacts)):
        a = None if gradient_per_pc is None else (gradient_per_pc * r_l[k]) ** 2
        amplitudes.append(Parameter(f"amplitude_{k}", 0.0, np.inf, Transform.LOG, label=f"a_{k}"))
        like = sky_likelihood(
            spec, art, amplitude=a, form=form, amplitude_name=amplitudes[-1].name, tails=tails, tail_dof=tail_dof
        )
        names = (SIGMA2, LAMBDA_C) + ((amplitudes[-1].name,) if a is None else ())
        matrix = np.zeros((len(like.names), len(names)))
        matrix[0, 0], matrix[1, 1] = 1.0, -1.0  # ln σ², ln ρ_k = ln r_L,k − ln λ_c
        if a is None:
            matrix[2, 2] = 1.0
        offset = np.array([0.0, np.log(r_l[k])] + ([0.0] if a is None else []))
        members.append(Reparametrised(member=like, matrix=jnp.asarray(matrix), offset=jnp.asarray(offset), names=names))
    parameters = Parametrisation(box.parameters + (tuple(amplitudes) if gradient_per_pc is None else ()))
    return JointLikelihood(members), parameters, box, r_l


def fit_skies(
    spectra: list[ObservedSpectrum],
    artifacts: list[EmulatorArtifact],
    *,
    gradient_per_pc: float | None = None,
    b0_microgauss: float = 3.0,
    charge: float = 1.0,
    form: LikelihoodForm | str = LikelihoodForm.LOGNORMAL,
    tails: SkyTails | str = SkyTails.GAUSSIAN,
    tail_dof: float | None = None,
    options: FitOptions = FitOptions(),
    progress: bool = True,
) -> FitResult:
    """Fit σ² and λ_c (pc) shared by several spectra, each with its own r_L(E_k) and amplitude
    (module docstring). ``artifacts[k]`` is the artifact of ``spectra[k]``'s analysis;
    ``gradient_per_pc`` known fixes every a_k = (|∇n/n| r_L(E_k))², else each is fitted;
    ``tails``, ``tail_dof``: :func:`joint_sky_likelihood`."""
    t0 = _time.perf_counter()
    spectra, artifacts = list(spectra), list(artifacts)
    joint, parameters, box, r_l = joint_sky_likelihood(
        spectra,
        artifacts,
        gradient_per_pc=gradient_per_pc,
        b0_microgauss=b0_microgauss,
        charge=charge,
        form=form,
        tails=tails,
        tail_dof=tail_dof,
    )
    members = [m for m in joint.members if isinstance(m, Reparametrised)]
    starts = start_grid(box, options.start_points)
    if gradient_per_pc is None:  # each amplitude from its own spectrum at the start point
        starts = np.array([[*t, *(_log_amplitude(m, t) for m in members)] for t in starts])
    label = f"fit ({len(spectra)} skies)" if progress else None
    fit = maximise_likelihood(joint, parameters, starts, options, progress=label)
    toys = calibration_toys(joint, options)
    return FitResult.from_fit(
        fit,
        names=parameters.names,
        parameters=dict(fit.values) | {f"larmor_radius_pc_{k}": r for k, r in enumerate(r_l)},
        intervals=fit.intervals,
        flags=fit.flags
        + list(dict.fromkeys(f for a in artifacts for f in fit_warnings(a, fit, box)))
        + [
            f"spectrum {k}: {f}"
            for k, a in enumerate(artifacts)
            for f in point_scatter_warning(
                a, {SIGMA2: fit.values[SIGMA2], RHO: r_l[k] / fit.values[LAMBDA_C]}, toys_local=toys == "local"
            )
        ],
        spectra=[_record(m, joint.names, s, a, fit.phi) for m, s, a in zip(members, spectra, artifacts)],
        settings=dict(
            gradient_per_pc=gradient_per_pc,
            b0_microgauss=b0_microgauss,
            charge=charge,
            form=str(form),
            toys=toys,
            tails=str(tails),
            tail_dof=[_sky(m).dof for m in members],
        )
        | options.record()
        | run_record(),
        wall_time_s=_time.perf_counter() - t0,
    )


def _sky(member: Reparametrised) -> AbstractSkyLikelihood:
    sky = member.member
    if not isinstance(sky, AbstractSkyLikelihood):
        raise TypeError(f"a joint sky fit's members are sky likelihoods; got {type(sky).__name__}")
    return sky


def _log_amplitude(member: Reparametrised, theta) -> float:
    """ln a of one member at the joint start θ = (ln σ², ln λ_c) (:func:`start_log_amplitude` at its ψ)."""
    psi = np.asarray(member.matrix[:2, :2] @ jnp.asarray(theta[:2]) + member.offset[:2])
    return start_log_amplitude(_sky(member), psi)


def _record(member: Reparametrised, joint_names, spectrum, artifact: EmulatorArtifact, phi) -> dict:
    """The spectrum's record (:func:`spectrum_record`) with the model at the member's own ψ."""
    own = jnp.asarray(np.asarray(phi)[[joint_names.index(n) for n in member.names]])
    band = _sky(member).spectrum_band(member.matrix @ own + member.offset)
    return spectrum_record(spectrum, artifact, np.isin(spectrum.ell, artifact.ells), band)
