"""What a fit on an emulator artifact should not be trusted for: the flags of its summary and fit.json.

A fit's own flags (poorly constrained directions, intervals open at the box) come from the driver,
:func:`jaxcr.inference.fit.maximise_likelihood`; these concern the artifact and the sky: an
unconverged model, log-normal moments raised to a floor, an estimate on the box's edge or beyond
the simulated box, a nearest design point whose realisations scatter far from the likelihood's
covariance of ln C_ℓ, and an implausible χ².
"""

from __future__ import annotations

import numpy as np

from ..options import SkyScatter, as_option
from ..parametrisation import Parametrisation
from .artifact import EmulatorArtifact
from .fit import FitOptions, LikelihoodFit
from .likelihood import AbstractLikelihood, JointLikelihood, Reparametrised
from .shipped import shipped_beyond

__all__ = [
    "fit_warnings",
    "point_scatter_warning",
    "calibration_toys",
    "P_VALUE_BOUNDS",
    "FLOOR_SHARE",
    "POINT_SCATTER_FACTOR",
]

P_VALUE_BOUNDS = (0.01, 0.99)  # χ² outside these tail probabilities is flagged (a misfit, or errors overstated)
FLOOR_SHARE = 0.01  # flag an artifact whose ln C_ℓ moments had more than this share raised to the floor
#: flag a fit whose nearest design point's realisations scatter this many times the likelihood's variance
#: of ln C_ℓ, or less than its inverse (32 realisations: about 3 standard errors from 1)
POINT_SCATTER_FACTOR = 1.5


def point_scatter_warning(
    artifact: EmulatorArtifact, values, sky_scatter: SkyScatter = SkyScatter.POOLED, toys_local: bool = False
) -> list[str]:
    """A flag (or none) where the design point nearest the named ``values`` has realisations that
    scatter beyond :data:`POINT_SCATTER_FACTOR` of the variance the likelihood takes there (pooled
    over the box, or with ``sky_scatter`` LOCAL local to θ). None where the intervals were
    calibrated by toys drawn with the local covariance (``toys_local``): those follow the point's
    own scatter."""
    local = as_option(SkyScatter, "sky_scatter", sky_scatter) == SkyScatter.LOCAL
    near = None if toys_local else artifact.point_scatter_near(values, local=local)
    if near is None or 1 / POINT_SCATTER_FACTOR <= near[0] <= POINT_SCATTER_FACTOR:
        return []
    point = ", ".join(f"{v:.3g}" for v in near[1].values())
    return [
        f"the realisations at the nearest design point ({point}) have {near[0]:.2g} times the variance of ln C_ℓ "
        f"that the likelihood {'takes there' if local else 'pools over the box'}: the intervals here are "
        f"{'too narrow' if near[0] > 1 else 'too wide'} (docs/fitting.md)"
    ]


def calibration_toys(like: AbstractLikelihood, options: FitOptions) -> str | None:
    """What a fit's calibrated intervals draw their toys with: None (profile intervals),
    "local" (an artifact's local covariance, for at least one spectrum) or "likelihood" (its own
    moments)."""
    if options.calibration is None:
        return None
    skies = like.members if isinstance(like, JointLikelihood) else (like,)
    members = [m.member if isinstance(m, Reparametrised) else m for m in skies]
    return "local" if any(getattr(m, "toy_emulator", None) is not None for m in members) else "likelihood"


def fit_warnings(
    artifact: EmulatorArtifact,
    fit: LikelihoodFit,
    box: Parametrisation,
    sky_scatter: SkyScatter = SkyScatter.POOLED,
    toys_local: bool = False,
) -> list[str]:
    """What the result should not be trusted for: an unconverged artifact, entries raised to the
    floor of the log-normal moments, an estimate on the edge of the box or, for an artifact with a
    pair-model baseline, outside the simulated box, a nearest design point whose realisations
    scatter far from the likelihood's covariance (:func:`point_scatter_warning`), an implausible χ²."""
    out = []
    conv = artifact.provenance.get("convergence", {})
    if conv and not conv.get("converged", True):
        out.append(
            f"the artifact's model is NOT converged at {artifact.time_text()} (its convergence diagnostic): the fit "
            "describes the sky backtracked to that time, not the limit T → ∞"
        )
    raised = float(artifact.provenance.get("raised_to_floor", 0.0))
    if raised > FLOOR_SHARE:
        out.append(
            f"{100 * raised:.1f} % of the artifact's per-realisation spectra were raised to the floor of its ln C_ℓ "
            "moments (pixel noise pushed them to or below zero): its log-normal scatter is uncertain"
        )
    for p, x in zip(box.parameters, fit.phi):
        lo, hi = p.coordinate_box
        if min(x - lo, hi - x) < 0.01 * (hi - lo):
            wider = shipped_beyond(artifact, p.name, low=bool(x - lo < hi - x))
            out.append(
                f"{p.name} = {float(p.to_value(x)):.4g} is on the edge of the box: the truth may lie outside it"
                + (f"; shipped artifacts reaching beyond it: {', '.join(wider)} (--artifact NAME)" if wider else "")
            )
    if artifact.emulator.baseline is not None:
        for p, x in zip(artifact.design_box.parameters, fit.phi):
            lo, hi = p.coordinate_box
            if not lo <= x <= hi:
                out.append(
                    f"{p.name} = {float(p.to_value(x)):.4g} is outside the simulated box [{p.low:.3g}, {p.high:.3g}]: "
                    "there the model is the pair model's extrapolation (jaxcr.pair_model), not a simulation; "
                    "held-out tests found simulated spectra 0.5-2 e-folds above it a factor 2 in ρ below the "
                    "design and 3-4 e-folds a factor 5 below (docs/fitting.md)"
                )
    values = box.values(np.asarray(fit.phi)[: len(box)])
    if set(artifact.design_box.names) <= set(values):  # a joint fit's λ_c: per spectrum, in fit_skies
        out += point_scatter_warning(artifact, values, sky_scatter, toys_local)
    lo_p, hi_p = P_VALUE_BOUNDS
    if np.isfinite(fit.p_value) and not lo_p <= fit.p_value <= hi_p:
        out.append(
            f"χ² = {fit.chi2:.3g} for {fit.dof} dof has p = {fit.p_value:.3g}: "
            + ("the model does not describe the data" if fit.p_value < lo_p else "the errors look overstated")
        )
    return out
