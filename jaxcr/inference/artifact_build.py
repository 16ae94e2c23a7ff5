"""Condensing a campaign into an emulator artifact (:class:`jaxcr.inference.artifact.EmulatorArtifact`).

:func:`build_artifact` takes one analysis of a :class:`jaxcr.inference.campaign.Campaign`
(:func:`artifact_from_spectra` does the same for spectra computed any other way) and

1. removes the simulation's own pixel noise (Eq. 12) from every realisation's spectrum: the
   white level N̂ measured on the map (:func:`jaxcr.spectrum_model.pixel_noise_level`) times
   the analysis' response t_ℓ to white noise (:meth:`jaxcr.analysis.Analysis.noise_response`; the mask, the ring-mean
   removal of time-scrambling and the ℓ ≤ L removal shape it), and by default also the noise's
   fluctuations from the mean and covariance of ln C_ℓ (:mod:`jaxcr.inference.pixel_noise`,
   :class:`jaxcr.options.PixelNoiseScatter`);
2. chooses the backtracking time T among the campaign's times by the convergence diagnostic
   (:func:`convergence_table`): the earliest T at which the noise-corrected ⟨C_ℓ⟩ of the fitted
   multipoles agree, within their errors, with those at every later stored time; the model
   spectrum is the large-T limit the paper describes;
3. fits the smooth emulator (:class:`jaxcr.inference.emulator.SpectrumEmulator`): ln⟨C_ℓ⟩ as a
   polynomial in θ (the named parameters' coordinates, any number of them) over the design box,
   and the cosmic variance S(θ);
4. records where it came from: the campaign spec and digest, a SHA-256 of the point files'
   arrays, the diagnostic, the versions and the date. ``EmulatorArtifact.version`` is the hash of
   its own arrays, so two builds of the same campaign are the same artifact.

An error says what to do when the pixel noise swamps a fitted multipole (raise nside, keep T
shorter, or fit fewer ℓ).
"""

from __future__ import annotations

import hashlib
import time as _time

import numpy as np

from .._version import __version__
from ..analysis import Analysis
from ..options import PixelNoiseScatter, SkyScatter, as_option
from ..pair_model import PairModelBaseline, PairModelLaw
from ..parametrisation import RHO, SIGMA2, Parametrisation, Transform
from ..spectra import max_lmax
from .artifact import EmulatorArtifact
from .campaign import Campaign, software_versions
from .convergence import (
    MAX_NOISE_FRACTION,
    POINT_ALPHA,
    convergence_table,
    noise_error,
    passing_ell_max,
    points_holding_back,
)
from .emulator import SpectrumEmulator, local_bandwidth
from .pixel_noise import deconvolved_log_moments

__all__ = ["build_artifact", "artifact_from_spectra", "campaign_spectra", "realisation_moments"]


def realisation_moments(c):
    """Moments of one point's corrected spectra c (R, L): mean (L,) and covariance (L, L) of C_ℓ,
    and of ln C_ℓ (realisations below 10⁻³ of the mean, where pixel-noise fluctuations push a
    corrected spectrum to or below zero, are raised to it), and the fraction so raised. The
    scatter keeps the pixel noise's own fluctuations (module docstring)."""
    mean = c.mean(0)
    x = c - mean
    floor = 1e-3 * np.abs(mean)
    logs = np.log(np.maximum(c, floor))
    lx = logs - logs.mean(0)
    n = len(c) - 1
    return mean, x.T @ x / n, logs.mean(0), lx.T @ lx / n, float(np.mean(c < floor))


def point_variance_ratios(log_covs, log_emulator: SpectrumEmulator, design) -> np.ndarray:
    """Per design point and ℓ, its realisations' Var(ln C_ℓ) over the one sky's variance the
    likelihood takes there (K, L'): the emulator's pooled one, or its local one."""
    model = np.array([np.diag(log_emulator.sky_log_covariance(t)) for t in np.asarray(design, dtype=float)])
    return np.diagonal(np.asarray(log_covs), axis1=1, axis2=2) / model


def point_scatter(log_covs, log_emulator: SpectrumEmulator, design) -> np.ndarray:
    """Per design point, the mean over ℓ of :func:`point_variance_ratios` (K,): above 1 where one
    sky scatters more than the likelihood's covariance says."""
    return np.mean(point_variance_ratios(log_covs, log_emulator, design), axis=1)


def point_scatter_record(log_covs, log_emulator: SpectrumEmulator, design) -> dict:
    """What an artifact records as ``point_scatter``: the design and, per point, :func:`point_scatter`
    against the pooled covariance (``ratio``, what a fit's likelihood takes by default) and, for an
    emulator with a local covariance, against that (``ratio_local``)."""
    record = dict(
        design=np.asarray(design).tolist(), ratio=point_scatter(log_covs, log_emulator.pooled(), design).tolist()
    )
    if log_emulator.local:
        record["ratio_local"] = point_scatter(log_covs, log_emulator, design).tolist()
    return record


def build_artifact(
    campaign: Campaign,
    analysis: str | None = None,
    *,
    ells=None,
    time: float | None = None,
    degree: int | None = None,
    z_margin: float = 2.0,
    point_alpha: float = POINT_ALPHA,
    pair_model: PairModelLaw | None = None,
    box: dict | None = None,
    pixel_noise_scatter: PixelNoiseScatter = PixelNoiseScatter.DECONVOLVED,
    sky_scatter: SkyScatter = SkyScatter.POOLED,
) -> EmulatorArtifact:
    """The emulator artifact of one analysis of a finished campaign (module docstring).

    Args:
        analysis: the analysis' name (default: the campaign's only or first one).
        ells: the multipoles to emulate (default: from the first ℓ above the analysis' ℓ ≤ L removal
            up to the largest ℓ whose pixel noise passes at the chosen time, :func:`passing_ell_max`,
            the widest such range that converges; the widest resolved at the last time, flagged,
            where none does; given ells that do not pass are refused with the ℓ ranges that pass at each time).
        time: force the model's ΩT (one of the campaign's times) instead of the diagnostic's.
        degree: polynomial degree of ln⟨C_ℓ⟩ in θ (needs at least as many design points as
            monomials: 6 for degree 2 in two parameters, 10 in three). 2 by default: the design
            points' sampling noise is common to all ℓ (a far-wandering realisation raises every
            multipole), and a cubic over 25 points of 16 realisations followed it and made one-sky
            intervals too narrow (68 % coverage 0.42-0.46 against 0.54-0.79 for the quadratic on
            synthetic IceCube-like skies).
        z_margin, point_alpha: the diagnostic's tolerances (:func:`convergence_table`): of the mean
            change over the design, and the false-alarm probability of its per-point test.
        pair_model: carry the θ-dependence by this :class:`jaxcr.pair_model.PairModelLaw` (e.g.
            :func:`jaxcr.pair_model.shipped_pair_model_law`): the polynomial then fits only the
            analysis' transfer ln⟨C_ℓ⟩ − ln⟨C_ℓ⟩_pair over the design, and the artifact may be
            fitted beyond the design (``box``). Needs parameters (σ², ρ). The pair model is a
            power law in σ² and ρ at ℓ ≥ 2, so a degree-1 transfer (the default) refits its
            exponents on the campaign, and its error grows with the distance from the design (the
            leverage); degree 0 keeps the law's exponents. Held-out tests: docs/fitting.md.
        box: {name: (low, high)} fit boxes wider than the design's (physical units), with ``pair_model`` only.
        pixel_noise_scatter: remove the pixel noise's fluctuations from the log-normal moments
            (``DECONVOLVED``, default) or keep them (``KEPT``, the 0.3 artifacts).
        sky_scatter: the covariance of one sky's ln C_ℓ pooled over the design (``POOLED``, default)
            or local to θ (``LOCAL``: variances and correlations follow θ, but fits with it were
            biased on mock skies, docs/fitting.md): :class:`jaxcr.options.SkyScatter`,
            :meth:`jaxcr.inference.emulator.SpectrumEmulator.fit_log`.
    """
    spec = campaign.spec
    names = [a.name for a in spec.analyses]
    name = names[0] if analysis is None else analysis
    if name not in names:
        raise ValueError(f"analysis must be one of {names}; got {analysis!r}")
    missing = campaign.pending()
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(spec.design)} design points of {campaign.folder} are not done "
            f"(first: {missing[:5]}); run `jaxcr campaign run {campaign.folder}` first"
        )
    spectra, noises, digest = campaign_spectra(campaign, name)
    provenance = dict(campaign=spec.as_dict(), campaign_folder=str(campaign.folder), points_sha256=digest)
    return artifact_from_spectra(
        spec.parameters,
        spec.design,
        spectra,
        noises,
        spec.times,
        spec.analyses[names.index(name)],
        spec.model.nside,
        ells=ells,
        time=time,
        degree=degree,
        z_margin=z_margin,
        point_alpha=point_alpha,
        provenance=provenance,
        pair_model=pair_model,
        cos2_gradient_b0=spec.model.cos2_gradient_b0,
        box=box,
        pixel_noise_scatter=pixel_noise_scatter,
        sky_scatter=sky_scatter,
    )


def _sky_scatter_record(sky_scatter: SkyScatter, log_emulator: SpectrumEmulator, log_covs, n_real) -> dict:
    """What the artifact records of its one-sky covariance: the kind and, for a local one, the
    leave-one-out scores of every width tried and of the pooled mean (:func:`local_bandwidth`)."""
    if sky_scatter == SkyScatter.POOLED:
        return dict(kind=sky_scatter.value)
    width, table = local_bandwidth(log_emulator.point_z, log_covs, n_real)
    return dict(kind=sky_scatter.value, bandwidth=width, leave_one_out=table)


def campaign_spectra(campaign: Campaign, analysis: str) -> tuple[list, list, str]:
    """One analysis' spectra of a finished campaign, per design point (R_k, T, lmax+1), the maps'
    pixel-noise levels, per point (R_k, T), and a SHA-256 of all the point files' arrays. R_k is
    the point's N_B,k (:meth:`jaxcr.inference.campaign.Campaign.add_realisations`); ``np.stack``
    the lists where every point has the same."""
    spectra, noises, digests = [], [], hashlib.sha256()
    for k in range(len(campaign.spec.design)):
        arrays, _ = campaign.load_point(k)
        spectra.append(arrays[f"cl_{analysis}"])  # (R, T, L)
        noises.append(arrays["pixel_noise"])  # (R, T)
        for key in sorted(arrays):
            digests.update(np.ascontiguousarray(arrays[key]).tobytes())
    return spectra, noises, digests.hexdigest()


def _check_artifact_options(ells, degree, time, times, lmax, analysis: Analysis, baseline: bool):
    ell_min = 1 if analysis.remove_ell_max is None else analysis.remove_ell_max + 1
    ells = np.arange(ell_min, lmax + 1) if ells is None else np.asarray(ells, dtype=int)
    if ells.ndim != 1 or ells.size < 2 or np.any(np.diff(ells) <= 0) or ells[0] < 0 or ells[-1] > lmax:
        raise ValueError(f"ells must be ≥ 2 increasing multipoles in [0, {lmax}] (lmax = 2·nside − 1); got {ells}")
    allowed = (0, 1, 2) if baseline else (1, 2, 3, 4)
    if degree not in allowed:
        raise ValueError(
            f"degree must be one of {allowed}{' with a pair model (of the transfer)' if baseline else ''}; got {degree!r}"
        )
    if time is not None and float(time) not in times:
        raise ValueError(f"time must be one of the campaign's times {list(times)}; got {time!r}")
    return ells


def artifact_from_spectra(
    parameters: Parametrisation,
    design,
    spectra,
    pixel_noise,
    times,
    analysis: Analysis,
    nside: int,
    *,
    ells=None,
    time: float | None = None,
    degree: int | None = None,
    z_margin: float = 2.0,
    point_alpha: float = POINT_ALPHA,
    provenance: dict | None = None,
    pair_model: PairModelLaw | None = None,
    cos2_gradient_b0: float = 1.0,
    box: dict | None = None,
    pixel_noise_scatter: PixelNoiseScatter = PixelNoiseScatter.DECONVOLVED,
    sky_scatter: SkyScatter = SkyScatter.POOLED,
) -> EmulatorArtifact:
    """The emulator artifact of per-realisation model spectra on a design (module docstring).

    Args:
        parameters: the named parameters of the design's coordinates.
        design: θ_k, shape (K, P).
        spectra: per design point, realisation and time, the analysis' spectrum (K, R, T, lmax+1),
            or a sequence of K arrays (R_k, T, lmax+1) where the points have different N_B,k
            (each point's mean is then weighted by its N_B,k, :meth:`SpectrumEmulator.fit`).
        pixel_noise: each map's white pixel-noise level N̂ (K, R, T), or K arrays (R_k, T) (zeros: none to remove).
        times: the times ΩT of axis T; analysis, nside: how the spectra were made.
        ells, time, degree, z_margin, point_alpha, pair_model, box, pixel_noise_scatter, sky_scatter: as for
            :func:`build_artifact`.
        cos2_gradient_b0: cos² of the angle between the CR gradient and B0 (the pair model's g).
        provenance: recorded with the artifact (the design size, diagnostic, versions and date are added).
    """
    design = np.asarray(design, dtype=float)
    spectra = [np.asarray(x, dtype=float) for x in spectra]
    pixel_noise = [np.asarray(x, dtype=float) for x in pixel_noise]
    times = tuple(float(t) for t in times)
    k_points = len(spectra)
    shapes = [(s.shape, n.shape) for s, n in zip(spectra, pixel_noise)]
    if (
        design.shape != (k_points, len(parameters))
        or len(pixel_noise) != k_points
        or any(len(a) != 3 or a[:2] != b or a[1] != len(times) for a, b in shapes)
    ):
        raise ValueError(
            f"design {design.shape}, spectra {[a for a, _ in shapes][:3]} and pixel_noise {[b for _, b in shapes][:3]} "
            f"do not match (K points, R realisations, {len(times)} times, {len(parameters)} parameters)"
        )
    n_real = np.array([len(x) for x in spectra])
    lmax = max_lmax(nside)
    degree = (2 if pair_model is None else 1) if degree is None else degree
    design_box = parameters.design_box(design)
    fit_box = _fit_box(design_box, pair_model, box)
    auto_ells = ells is None
    pixel_noise_scatter = as_option(PixelNoiseScatter, "pixel_noise_scatter", pixel_noise_scatter)
    sky_scatter = as_option(SkyScatter, "sky_scatter", sky_scatter)
    ells = _check_artifact_options(ells, degree, time, times, lmax, analysis, pair_model is not None)
    t_ell, v_ell = analysis.noise_response(nside)
    c = [x - n[..., None] * t_ell for x, n in zip(spectra, pixel_noise)]  # noise-corrected, K × (R_k, T, L)
    passing = passing_ell_max(c, pixel_noise, t_ell, ells)
    # ells None: the widest range from the first ℓ that is converged and resolved at one time (a
    # narrower range may converge earlier, when the pixel noise is still lower); where no range
    # converges, the widest resolved at the diagnostic's (last) time, flagged NOT converged
    tops = [ells[-1]]
    if auto_ells:
        resolved = [p for p in passing if p is not None] if time is None else [passing[times.index(float(time))] or 0]
        tops = [t for t in ells[:0:-1] if t <= max(resolved, default=0)] or [ells[1]]
    widest_resolved = None
    for top in tops:
        rows, chosen = convergence_table([ck[..., ells[ells <= top]] for ck in c], times, z_margin, point_alpha)
        j = chosen if time is None else times.index(float(time))
        if passing[j] is None or passing[j] < top:
            continue
        widest_resolved = widest_resolved or (top, rows, chosen, j)
        if time is not None or (rows[chosen]["converged"] and chosen < len(times) - 1):
            break
    else:
        if widest_resolved is not None:
            top, rows, chosen, j = widest_resolved
    wider = None  # a wider range that resolves but did not converge, and the points that hold it back
    if widest_resolved is not None and widest_resolved[0] > top:
        wider = dict(ell_max=int(widest_resolved[0]), points=points_holding_back(widest_resolved[1][-2]))
    ells = ells[ells <= top]
    moments = [realisation_moments(c[k][:, j][:, ells]) for k in range(k_points)]
    means, covs, log_means, log_covs, raised = (np.array([m[i] for m in moments]) for i in range(5))
    if pixel_noise_scatter == PixelNoiseScatter.DECONVOLVED:  # points without pixel noise keep the plain moments
        for k in [k for k in range(k_points) if (pixel_noise[k][:, j] > 0).any()]:
            log_means[k], log_covs[k] = deconvolved_log_moments(
                c[k][:, j][:, ells], pixel_noise[k][:, j], t_ell[ells], v_ell[ells]
            )
    frac = np.array(
        [pixel_noise[k][:, j].mean() * t_ell[ells] / np.where(means[k] > 0, means[k], np.nan) for k in range(k_points)]
    )
    if (~np.isfinite(frac) | (frac > MAX_NOISE_FRACTION)).any():
        raise noise_error(frac, times, j, ells, parameters.values, design, passing)
    low, high = fit_box.coordinate_low, fit_box.coordinate_high
    z_box = ((low + high) / 2, (high - low) / 2)
    baseline = None if pair_model is None else PairModelBaseline(pair_model, ells, cos2_gradient_b0)
    emulator = SpectrumEmulator.fit(design, means, covs, n_real, degree, *z_box, baseline=baseline)
    log_emulator = SpectrumEmulator.fit_log(
        design, log_means, log_covs, n_real, degree, *z_box, baseline=baseline, scatter=sky_scatter
    )
    return EmulatorArtifact(
        emulator=emulator,
        log_emulator=log_emulator,
        ells=ells,
        analysis=analysis,
        time=float(times[j]),
        parameters=fit_box,
        n_realisations=int(n_real.min()),
        noise_fraction=np.nanmax(frac, axis=0),
        provenance=dict(provenance or {})
        | dict(
            design_points=int(k_points),
            realisations=n_real.tolist(),
            design_box=design_box.as_dict(),
            raised_to_floor=float(np.max(raised)) if pixel_noise_scatter == PixelNoiseScatter.KEPT else 0.0,
            point_scatter=point_scatter_record(log_covs, log_emulator, design),
            pixel_noise_scatter=pixel_noise_scatter.value,
            sky_scatter=_sky_scatter_record(sky_scatter, log_emulator, log_covs, n_real),
            convergence=dict(
                table=rows,
                chosen_time=float(times[chosen]),
                converged=bool(rows[chosen]["converged"] and chosen < len(times) - 1),
                forced_time=None if time is None else float(time),
                wider_unconverged=wider,
                z_margin=z_margin,
                point_alpha=point_alpha,
            ),
            built=_time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            versions=software_versions(),
            builder=f"jaxcr {__version__} artifact_from_spectra(degree={degree}, pixel noise {pixel_noise_scatter.value}"
            + ("" if pair_model is None else ", pair-model baseline")
            + ")",
        ),
    )


def _fit_box(design_box: Parametrisation, pair_model: PairModelLaw | None, box: dict | None) -> Parametrisation:
    """The box fits may use: the design's, or wider (``box``) when a pair model carries θ beyond it."""
    if pair_model is not None:
        if design_box.names != (SIGMA2, RHO) or any(p.transform != Transform.LOG for p in design_box.parameters):
            raise ValueError(
                f"pair_model needs the parameters (sigma2, rho), both log-transformed; got {list(design_box.names)}"
            )
        if not isinstance(pair_model, PairModelLaw):
            raise TypeError(f"pair_model must be a jaxcr.pair_model.PairModelLaw; got {type(pair_model).__name__}")
    if box is None:
        return design_box
    if pair_model is None:
        raise ValueError(
            "box (fit boxes wider than the design) needs pair_model: the polynomial emulator does not extrapolate"
        )
    return design_box.widened(box)
