"""Fits of σ², ρ = r_L/λ_c (one spectrum) or σ², λ_c, B0 (spectra at several energies).

``method`` selects how: :class:`jaxcr.inference.EmulatorFit` (default; a smooth emulator of the
model, optax L-BFGS, profile-likelihood intervals: the method for long backtracking times) or
:class:`jaxcr.inference.GradientFit` (Fisher scoring or any optax optimiser on estimated
gradients: fast at small λT). Both optimise natural logarithms of the parameters.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from .. import _checks, units
from ..observations import ObservedSpectrum
from .emulator_fit import EmulatorFit, run_emulator_fit
from .gradient_fit import GradientFit, run_gradient_fit
from .likelihood import observed_multipoles
from .model import SpectrumModel
from .results import FitResult

__all__ = ["fit_spectrum", "fit_joint"]


def _check_init(init, names):
    if not isinstance(init, dict):
        raise TypeError(f"init must be a dict with {', '.join(names)}; got {type(init).__name__}")
    for n in names:
        if n not in init:
            raise ValueError(f"init must give {', '.join(names)}; missing {n!r}")
        _checks.check_positive(f"init[{n!r}]", init[n])


def _cut_spectra(spectra, model, ell_max):
    """The spectra restricted to ℓ ≤ ell_max, and {index: cut ℓ}. Multipoles above the model's
    lmax = 2·nside − 1 are an error unless ``ell_max`` (≤ lmax) cuts them explicitly."""
    if ell_max is not None:
        _checks.check_positive_int("ell_max", ell_max)
        if ell_max > model.lmax:
            raise ValueError(
                f"ell_max = {ell_max} exceeds the model's lmax = 2·nside − 1 = {model.lmax}: raise the model's nside "
                "(SpectrumModel.for_spectrum picks it from the data)"
            )
    out, cut = [], {}
    for k, spec in enumerate(spectra):
        if not isinstance(spec, ObservedSpectrum):
            out.append(spec)  # the type check below reports it
            continue
        ell = np.asarray(spec.ell)
        above = ell > (model.lmax if ell_max is None else ell_max)
        if above.any() and ell_max is None:
            raise ValueError(
                f"spectrum {k} ({spec.observatory}) has ℓ = {ell[above].tolist()} above the model's lmax = 2·nside − 1 = "
                f"{model.lmax}: raise the model's nside (SpectrumModel.for_spectrum(spectrum) picks it from the data), "
                "or pass ell_max to cut them explicitly"
            )
        if above.any():
            if above.all():
                raise ValueError(f"ell_max = {ell_max} removes every multipole of spectrum {k} ({spec.observatory})")
            keep = ~above
            spec = dataclasses.replace(
                spec,
                ell=ell[keep],
                cl=spec.cl[keep],
                sigma=spec.sigma[keep],
                isotropic_mean=None if spec.isotropic_mean is None else spec.isotropic_mean[keep],
                isotropic_sigma=None if spec.isotropic_sigma is None else spec.isotropic_sigma[keep],
            )
            cut[k] = ell[above].tolist()
        out.append(spec)
    return out, cut


def _check_inputs(spectra, model, method):
    _checks.require_x64("the fits")
    for k, spec in enumerate(spectra):
        if not isinstance(spec, ObservedSpectrum):
            raise TypeError(
                f"spectrum {k} must be an ObservedSpectrum (jaxcr.observations.load_spectrum); "
                f"got {type(spec).__name__}"
            )
    if not isinstance(model, SpectrumModel):
        raise TypeError(f"model must be a SpectrumModel; got {type(model).__name__}")
    model.validate()
    for k, spec in enumerate(spectra):
        ell, sel = observed_multipoles(spec, model.lmax + 1)
        if len(ell) < 2:
            raise ValueError(
                f"spectrum {k} ({spec.observatory}) shares only ℓ = {ell.tolist()} with the model's "
                f"ℓ ≤ {model.lmax}: a fit needs at least 2 multipoles; raise the model's nside"
            )
    if not isinstance(method, (EmulatorFit, GradientFit)):
        raise TypeError(f"method must be EmulatorFit(...) or GradientFit(...); got {method!r}")
    method.validate()


def _run(problem, phi0, names, box_axes, method, progress, cut) -> FitResult:
    if isinstance(method, EmulatorFit):
        result = run_emulator_fit(problem, phi0, names, box_axes, method, progress)
    else:
        result = run_gradient_fit(problem, phi0, names, method, progress)
    result.ell_cut = cut
    return result


def fit_spectrum(
    observed: ObservedSpectrum,
    model: SpectrumModel,
    init: dict,
    *,
    amplitude: float | None = None,
    method: EmulatorFit | GradientFit | None = None,
    ell_max: int | None = None,
    progress: bool = True,
) -> FitResult:
    """Fit σ² and ρ = r_L/λ_c to one spectrum.

    ``init`` = {"sigma2": ..., "rho": ...}. The amplitude a = (r_L |∇n/n|)² is profiled unless
    ``amplitude`` is given (a known CR gradient). With a profiled amplitude only the *shape* of
    the spectrum informs the fit, and its dependence on σ² is weak against the sky-to-sky
    variance: expect σ² to be reported as poorly constrained (experiments/README.md).
    The model's Boris step, if unset, is the default step at ``init`` for the whole fit.
    Multipoles above the model's lmax = 2·nside − 1 are an error unless ``ell_max`` cuts them
    (recorded in ``FitResult.ell_cut``). For one observed sky at long backtracking times, fit on a
    campaign's emulator artifact instead (:func:`jaxcr.inference.fit_sky`).
    """
    names = ("sigma2", "rho")
    method = EmulatorFit() if method is None else method
    _check_init(init, names)
    (observed,), cut = _cut_spectra([observed], model, ell_max)
    _check_inputs([observed], model, method)
    amp_fn = None
    if amplitude is not None:
        _checks.check_positive("amplitude", amplitude)
        value = float(amplitude)
        amp_fn = lambda p: jnp.asarray(value)
    phi0 = jnp.log(jnp.array([init["sigma2"], init["rho"]], dtype=float))
    problem = [(observed, model.with_observatory(observed).resolved(phi0), lambda p: p, amp_fn)]
    return _run(problem, phi0, names, (0, 1), method, progress, cut)


def fit_joint(
    spectra: list,
    model: SpectrumModel,
    init: dict,
    *,
    gradient_per_pc: float | None = None,
    charge: float = 1.0,
    method: EmulatorFit | GradientFit | None = None,
    ell_max: int | None = None,
    progress: bool = True,
) -> FitResult:
    """Joint fit of spectra at several energies with shared σ², λ_c (pc) and B0 (μG).

    Each spectrum k has ρ_k = r_L(E_k, B0)/λ_c with r_L ∝ E/(Z B0) (:mod:`jaxcr.units`). The
    spectral shapes fix only the ρ_k, i.e. the product λ_c·B0; λ_c and B0 separate only through
    the amplitude a_k = (r_L,k |∇n/n|)², so pass ``gradient_per_pc`` = |∇n/n| (1/pc) if it is known.
    Without it the amplitudes are profiled, only the product λ_c·B0 is constrained, and the fit
    reports the direction ln λ_c − ln B0 as unconstrained (infinite uncertainties).
    """
    names = ("sigma2", "lambda_c_pc", "b0_microgauss")
    method = EmulatorFit() if method is None else method
    _check_init(init, names)
    if not isinstance(spectra, (list, tuple)) or len(spectra) < 1:
        raise ValueError("fit_joint needs a list of at least one spectrum")
    spectra, cut = _cut_spectra(list(spectra), model, ell_max)
    _check_inputs(spectra, model, method)
    if gradient_per_pc is not None:
        _checks.check_positive("gradient_per_pc", gradient_per_pc)
    _checks.check_positive("charge", charge)
    phi0 = jnp.log(jnp.array([init[n] for n in names], dtype=float))
    problem = []
    for spec in spectra:
        e = float(spec.energy_tev)

        def theta_fn(p, e=e):
            r_l = units.larmor_radius_pc(e, jnp.exp(p[2]), charge)
            return jnp.stack([p[0], jnp.log(r_l) - p[1]])

        amp_fn = None
        if gradient_per_pc is not None:
            amp_fn = lambda p, e=e: (gradient_per_pc * units.larmor_radius_pc(e, jnp.exp(p[2]), charge)) ** 2
        problem.append((spec, model.with_observatory(spec).resolved(theta_fn(phi0)), theta_fn, amp_fn))
    return _run(problem, phi0, names, (0, 1, 1), method, progress, cut)
