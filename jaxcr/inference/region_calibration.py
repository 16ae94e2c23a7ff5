"""Critical values of the joint region of (σ², ρ), calibrated on a campaign's realisations.

Wilks' χ²₂ points (2.30 and 6.18) hold where the likelihood is Gaussian in the parameters and the
box is far. On the σ²–ρ ridge that the box cuts at small ρ they do not. There the joint region of
single skies covered 0.58-0.59 where 0.68 was claimed (docs/fitting.md). This module replaces
them by the distribution of the statistic itself. At each design point θ_k of a campaign (best of
another seed than the artifact's, so that the emulator was not fitted to these skies):

1. every realisation r is one sky of unit amplitude with its pixel noise as measurement error
   (:func:`jaxcr.inference.realisation_skies.realisation_skies`);
2. its λ_r = min_ψ −2 ln L(θ_k, ψ) − min_{θ, ψ} −2 ln L(θ, ψ), the statistic of the joint region at
   the truth, from the same likelihood as the fit (artifact, form, sky scatter, tails, amplitude
   known or free, multipoles). The best fit is the fit driver's first stage
   (:func:`~jaxcr.inference.fit.best_fit` from the fit's start grid), and λ_r ≥ 0 by construction;
3. c_P(θ_k) is the P-quantile of the λ_r (P = 68.27 % and 95.45 %).

:class:`~jaxcr.inference.joint_region.RegionThresholds` interpolates them over the box, and a fit
given them (``fit_sky(region_thresholds=…)``, ``jaxcr fit --region-thresholds``) reports the region
λ(θ) ≤ c_P(θ). The skies that the log-normal form refuses (Ĉ_ℓ − N ≤ 0 at some ℓ) are left out and
counted. The calibration is conditional on a sky being fitted, as the fit is.

The measurement errors of these skies are the campaign's pixel noise, so the calibration holds
for data measured as the campaign's skies are. For IceCube-like mock skies, whose errors are
larger, it made the region too small away from the low-ρ corner (68 % coverage 0.60-0.61 where
χ²₂'s region had 0.75-0.90; docs/fitting.md, "The joint region, calibrated on a second
campaign"). There χ²₂'s values, the fit's default, are the better choice.
"""

from __future__ import annotations

import time as _time
from collections.abc import Sequence

import numpy as np

from ..field import as_option
from ..options import SkyScatter, SkyTails
from ..parametrisation import Parametrisation
from .artifact import EmulatorArtifact
from .campaign import Campaign, software_versions
from .fit import FitOptions, best_fit
from .joint_region import SNAP, RegionThresholds, profile_on_nodes, region_settings
from .likelihood import LikelihoodForm
from .neyman import LEVEL_PROBABILITIES
from .realisation_skies import realisation_skies
from .sky_fit import AMPLITUDE, candidate_starts, sky_likelihood, start_log_amplitude

__all__ = ["region_thresholds", "statistics_at_truth", "MIN_SKIES"]

MIN_SKIES = 20  # fitted realisations per point: the 95 % quantile of 20 rests on one sky above it


def statistics_at_truth(
    skies,
    artifact: EmulatorArtifact,
    truth,
    *,
    amplitude: float | None = 1.0,
    form: LikelihoodForm | str = LikelihoodForm.LOGNORMAL,
    sky_scatter: SkyScatter | str = SkyScatter.POOLED,
    tails: SkyTails | str = SkyTails.GAUSSIAN,
    tail_dof: float | None = None,
    options: FitOptions = FitOptions(),
) -> tuple[np.ndarray, int, dict | None]:
    """λ at the truth (coordinates ``truth``) of each sky the likelihood takes, the number it
    refuses, and the likelihood's settings (:func:`~jaxcr.inference.joint_region.region_settings`;
    None when every sky was refused). ``amplitude``: the skies' a = (|∇n/n| r_L)² if known (1 for
    a campaign's realisations), None to fit it."""
    amplitude_free = amplitude is None
    box = artifact.parameters
    parameters = Parametrisation(box.parameters + (AMPLITUDE,)) if amplitude_free else box
    fixed = np.arange(len(parameters)) < len(box)
    lam, refused, settings = [], 0, None
    for sky in skies:
        try:
            like = sky_likelihood(
                sky,
                artifact,
                amplitude=amplitude,
                form=form,
                sky_scatter=sky_scatter,
                tails=tails,
                tail_dof=tail_dof,
            )
        except ValueError as err:
            if not str(err).startswith("Ĉ_ℓ − N ≤ 0"):  # the log-normal form's refusal; anything else is an error
                raise
            refused += 1
            continue
        settings = settings or region_settings(artifact, like, form, sky_scatter, amplitude_free)
        best = float(best_fit(like, candidate_starts(like, parameters, box, None, options.start_points), options)[1])
        at_truth = np.asarray(truth, dtype=float)
        if amplitude_free:
            at_truth = np.append(at_truth, start_log_amplitude(like, at_truth))
        m_truth = profile_on_nodes(like, at_truth, fixed, at_truth[None], options)[0]
        lam.append(float(m_truth - min(best, m_truth)))
    return np.asarray(lam), refused, settings


def _points_in_box(campaign: Campaign, box: Parametrisation) -> list[int]:
    """The computed design points of ``campaign`` inside ``box``; ValueError if some are not computed."""
    if tuple(campaign.spec.parameters.names) != tuple(box.names):
        raise ValueError(
            f"campaign {campaign.folder} varies {list(campaign.spec.parameters.names)}, the artifact {list(box.names)}"
        )
    inside = [k for k in range(len(campaign.spec.design)) if not box.outside(campaign.spec.values(k))]
    missing = [k for k in inside if not campaign.point_path(k).exists()]
    if missing:
        raise ValueError(f"campaign {campaign.folder}: design points {missing} are not computed (jaxcr campaign run)")
    return inside


def region_thresholds(
    campaigns: Campaign | Sequence[Campaign],
    artifact: EmulatorArtifact,
    *,
    amplitude_free: bool = False,
    form: LikelihoodForm | str = LikelihoodForm.LOGNORMAL,
    sky_scatter: SkyScatter | str = SkyScatter.POOLED,
    tails: SkyTails | str = SkyTails.GAUSSIAN,
    tail_dof: float | None = None,
    options: FitOptions = FitOptions(),
    progress: bool = True,
) -> RegionThresholds:
    """The P-quantiles of λ at every design point of ``campaigns`` inside the artifact's box, from
    their realisations fitted as skies (module docstring); the realisations of several campaigns
    at the same point (within :data:`~jaxcr.inference.joint_region.SNAP`) are pooled. The fits
    they serve must use the same artifact and likelihood settings. Raises ValueError, before any
    fit, when a campaign's parameters are not the artifact's, a point in the box is not computed,
    or fewer than 3 distinct points lie in the box; and after a point whose likelihood takes fewer
    than :data:`MIN_SKIES` of its realisations."""
    from tqdm.auto import tqdm

    campaigns = [campaigns] if isinstance(campaigns, Campaign) else list(campaigns)
    box = artifact.parameters
    tasks = [(c, k) for c in campaigns for k in _points_in_box(c, box)]
    points: list[np.ndarray] = []
    which = []  # the pooled point of each task
    for c, k in tasks:
        near = [j for j, p in enumerate(points) if np.abs(p - c.spec.design[k]).max() < SNAP]
        which.append(near[0] if near else len(points))
        if not near:
            points.append(np.asarray(c.spec.design[k], dtype=float))
    if len(points) < 3:
        raise ValueError(f"{len(points)} distinct design points lie in the artifact's box (at least 3 needed)")
    lam: list[list[float]] = [[] for _ in points]
    refused = np.zeros(len(points), dtype=int)
    settings = None
    for (c, k), j in zip(tqdm(tasks, desc="region thresholds", unit="point", disable=not progress), which):
        values, n_refused, point_settings = statistics_at_truth(
            realisation_skies(c, artifact, k),
            artifact,
            points[j],
            amplitude=None if amplitude_free else 1.0,
            form=form,
            sky_scatter=sky_scatter,
            tails=tails,
            tail_dof=tail_dof,
            options=options,
        )
        lam[j] += values.tolist()
        refused[j] += n_refused
        settings = settings or point_settings
    for j, pooled in enumerate(lam):
        if len(pooled) < MIN_SKIES:
            raise ValueError(
                f"design point {box.values(points[j])}: the likelihood takes {len(pooled)} of its "
                f"{len(pooled) + refused[j]} realisations (at least {MIN_SKIES} needed); add realisations "
                "(jaxcr campaign more-realisations) or use form offset-lognormal, which takes every sky"
            )
    return RegionThresholds(
        names=tuple(box.names),
        points=np.asarray(points),
        critical={level: np.array([np.quantile(v, p) for v in lam]) for level, p in LEVEL_PROBABILITIES.items()},
        skies=np.array([len(v) for v in lam]),
        refused=refused,
        settings=dict(
            fit=settings,
            campaigns=[
                dict(folder=str(c.folder), digest=c.spec.digest(), seed=c.spec.model.seed, nside=c.spec.model.nside)
                for c in campaigns
            ],
            points=len(points),
            tails=as_option(SkyTails, "tails", tails).value,
            start_points=options.start_points,
            quantile="numpy linear",
            versions=software_versions(),
            date=_time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        ),
    )
