"""Emulator artifacts: a finished campaign condensed into the model a fit needs, with provenance.

:func:`build_artifact` takes one analysis of a :class:`jaxcr.inference.campaign.Campaign` and

1. removes the simulation's own pixel noise (Eq. 12) from every realisation's spectrum: the
   white level N̂ measured on the map (:func:`jaxcr.inference.campaign.pixel_noise_level`) times
   the analysis' response t_ℓ to white noise (:func:`noise_transfer`; the mask, the ring-mean
   removal of time-scrambling and the ℓ ≤ L removal shape it). The noise's fluctuations stay in
   the realisations' scatter: the cosmic variance is then slightly overestimated where the pixel
   noise is comparable to the signal (conservative; removing a Gaussian estimate of that share
   made the intervals of synthetic-sky fits too narrow);
2. chooses the backtracking time T among the campaign's times by the convergence diagnostic
   (:func:`convergence_table`): the earliest T at which the noise-corrected ⟨C_ℓ⟩ of the fitted
   multipoles agree, within their errors, with those at every later stored time; the model
   spectrum is the large-T limit the paper describes;
3. fits the smooth emulator (:class:`jaxcr.inference.emulator.SpectrumEmulator`): ln⟨C_ℓ⟩ as a
   polynomial in θ = (ln σ², ln ρ) over the design box, and the cosmic variance S(θ);
4. records where it came from: the campaign spec and digest, a SHA-256 of the point files'
   arrays, the diagnostic, the versions and the date. ``EmulatorArtifact.version`` is the hash of
   its own arrays, so two builds of the same campaign are the same artifact.

An error says what to do when the pixel noise swamps a fitted multipole (raise nside, keep T
shorter, or fit fewer ℓ).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time as _time
from pathlib import Path

import numpy as np

from .. import _checks, io
from .._version import __version__
from ..observatory import observed_spectra
from ..sky import declination_band_mask
from ..spectra import max_lmax
from .campaign import Analysis, Campaign, software_versions
from .emulator import SpectrumEmulator
from .model import SpectrumModel

__all__ = ["EmulatorArtifact", "build_artifact", "noise_transfer", "convergence_table", "ARTIFACT_FORMAT"]

ARTIFACT_FORMAT = "jaxcr-emulator/1"
NOISE_MAPS = 400  # white-noise maps behind t_ℓ and v_ℓ (relative error of t_ℓ ≈ 1/sqrt(400·f(2ℓ+1)))
MAX_NOISE_FRACTION = 1.0  # the pixel noise may be at most ⟨C_ℓ⟩ itself at a fitted ℓ (module docstring)


def noise_transfer(analysis: Analysis, nside: int, n_maps: int = NOISE_MAPS, seed: int = 0):
    """(t_ℓ, v_ℓ): mean and variance of the spectrum ``analysis`` publishes of white noise whose
    full-sky level is 1 (pixel variance N_pix/4π), ℓ ≤ 2·nside − 1. Monte Carlo, ``n_maps`` maps."""
    npix = 12 * nside**2
    mask = None
    if (analysis.dec_min_deg, analysis.dec_max_deg) != (-90.0, 90.0):
        mask = np.asarray(declination_band_mask(nside, analysis.dec_min_deg, analysis.dec_max_deg))
    noise = np.random.default_rng(seed).normal(size=(n_maps, npix)) * np.sqrt(npix / (4 * np.pi))
    cl = np.asarray(
        observed_spectra(
            noise,
            mask,
            estimator=analysis.estimator,
            background=analysis.background,
            remove_ell_max=analysis.remove_ell_max,
            lmax=max_lmax(nside),
            dec_min_deg=analysis.dec_min_deg,
            dec_max_deg=analysis.dec_max_deg,
        )
    )
    return cl.mean(0), cl.var(0, ddof=1)


def _corrected(cl, noise, t_ell):
    """Noise-corrected per-realisation spectra: C_ℓ − N̂ t_ℓ (cl (..., L), noise (...,))."""
    return cl - noise[..., None] * t_ell


def _moments(c):
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


def convergence_table(c_by_time, times, z_margin: float = 2.0) -> tuple[list[dict], int]:
    """The convergence diagnostic of the noise-corrected spectra ``c_by_time`` (K points, R, T, L).

    For each stored time T_j and design point k, the paired differences of every realisation's
    ⟨C_ℓ⟩ at T_j and at the last time give z_kℓ = mean/SE; q_k = mean over ℓ of z_kℓ² is ≈ 1
    when the spectrum no longer changes. T_j counts as converged when the mean of q_k over the
    points exceeds 1 by at most ``z_margin`` standard errors of that mean (the spread over points
    carries the correlation between multipoles). The chosen index is the earliest T_j from which
    every later time is converged; the last time when none is (then flagged). Also reported: the
    mean relative shift of ⟨C_ℓ⟩ from T_j to the last time.
    """
    c = np.asarray(c_by_time)
    n_t = c.shape[2]
    rows, ok = [], []
    for j in range(n_t):
        d = c[:, :, j] - c[:, :, -1]  # (K, R, L)
        if j == n_t - 1:
            rows.append(dict(time=float(times[j]), q=1.0, q_se=0.0, relative_shift=0.0, converged=True))
            ok.append(True)
            continue
        se = d.std(1, ddof=1) / np.sqrt(d.shape[1])
        z = d.mean(1) / np.where(se > 0, se, np.inf)
        q = np.mean(z**2, axis=1)  # (K,)
        q_se = q.std(ddof=1) / np.sqrt(len(q)) if len(q) > 1 else np.inf
        last = c[:, :, -1].mean(1)
        shift = float(np.mean((c[:, :, j].mean(1) - last) / np.where(np.abs(last) > 0, np.abs(last), 1.0)))
        converged = bool(q.mean() - 1.0 <= z_margin * q_se)
        rows.append(
            dict(time=float(times[j]), q=float(q.mean()), q_se=float(q_se), relative_shift=shift, converged=converged)
        )
        ok.append(converged)
    chosen = n_t - 1
    for j in range(n_t - 1, -1, -1):
        if not all(ok[j:]):
            break
        chosen = j
    return rows, chosen


@dataclasses.dataclass(frozen=True)
class EmulatorArtifact:
    """An emulator of one analysis' model spectrum at one T, with its provenance.

    Attributes:
        emulator: ⟨C_ℓ⟩(θ) and S(θ) of the unit-gradient sky (a = 1), ℓ in ``ells``.
        log_emulator: ⟨ln C_ℓ⟩(θ) and Cov(ln C_ℓ, ln C_ℓ') of the same sky (the log-normal likelihood).
        ells: the emulated multipoles.
        analysis: the observatory analysis the spectra went through.
        time: the backtracking time ΩT of the model (chosen by the diagnostic unless forced).
        theta_low, theta_high: the design box in θ = (ln σ², ln ρ); fits stay inside it.
        n_realisations: N_B per design point.
        noise_fraction: per ℓ, the largest pixel-noise correction N̂ t_ℓ / ⟨C_ℓ⟩ over the points.
        provenance: campaign spec and digest, point-file hash, diagnostic table, versions, date.
    """

    emulator: SpectrumEmulator
    log_emulator: SpectrumEmulator
    ells: np.ndarray
    analysis: Analysis
    time: float
    theta_low: np.ndarray
    theta_high: np.ndarray
    n_realisations: int
    noise_fraction: np.ndarray
    provenance: dict

    _ARRAYS = ("centre", "scale", "coef", "ftf_inv", "rel", "rel_emu", "reduced_chi2")

    @property
    def version(self) -> str:
        """SHA-256 (16 hex digits) of the artifact's arrays: equal for equal artifacts."""
        h = hashlib.sha256()
        for emu in (self.emulator, self.log_emulator):
            for name in self._ARRAYS:
                h.update(np.ascontiguousarray(getattr(emu, name), dtype=float).tobytes())
        for arr in (self.ells, self.theta_low, self.theta_high):
            h.update(np.ascontiguousarray(arr, dtype=float).tobytes())
        h.update(repr((self.analysis.as_dict(), self.time, self.emulator.degree)).encode())
        return h.hexdigest()[:16]

    def save(self, path) -> Path:
        """Write the artifact (one ``.npz``: arrays plus a JSON record), atomically."""
        arrays = {name: getattr(self.emulator, name) for name in self._ARRAYS}
        arrays |= {f"log_{name}": getattr(self.log_emulator, name) for name in self._ARRAYS}
        arrays |= dict(
            ells=self.ells, theta_low=self.theta_low, theta_high=self.theta_high, noise_fraction=self.noise_fraction
        )
        meta = dict(
            format=ARTIFACT_FORMAT,
            version=self.version,
            degree=self.emulator.degree,
            analysis=self.analysis.as_dict(),
            time=self.time,
            n_realisations=self.n_realisations,
            provenance=self.provenance,
        )
        return io.save_checkpoint(path, arrays, meta)

    @classmethod
    def load(cls, path) -> "EmulatorArtifact":
        """Read an artifact written by :meth:`save`; checks its format and its version hash."""
        arrays, meta = io.load_checkpoint(path)
        if meta.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"{path} is not a {ARTIFACT_FORMAT} artifact (format {meta.get('format')!r})")
        emulator = SpectrumEmulator(**{name: arrays[name] for name in cls._ARRAYS}, degree=int(meta["degree"]))
        log_emulator = SpectrumEmulator(
            **{name: arrays[f"log_{name}"] for name in cls._ARRAYS}, degree=int(meta["degree"]), log_moments=True
        )
        out = cls(
            emulator=emulator,
            log_emulator=log_emulator,
            ells=arrays["ells"].astype(int),
            analysis=Analysis(**meta["analysis"]),
            time=float(meta["time"]),
            theta_low=arrays["theta_low"],
            theta_high=arrays["theta_high"],
            n_realisations=int(meta["n_realisations"]),
            noise_fraction=arrays["noise_fraction"],
            provenance=meta["provenance"],
        )
        if out.version != meta.get("version"):
            raise ValueError(f"{path}: its arrays do not match its recorded version {meta.get('version')}: damaged")
        return out

    def campaign_model(self):
        """The campaign's :class:`jaxcr.inference.model.SpectrumModel` (for synthetic skies made like its points)."""
        return SpectrumModel.from_dict(self.provenance["campaign"]["model"])

    def summary(self) -> str:
        lo, hi = np.exp(self.theta_low), np.exp(self.theta_high)
        conv = self.provenance.get("convergence", {})
        return (
            f"emulator artifact {self.version} ({self.analysis.name}): ℓ = {self.ells[0]}..{self.ells[-1]}, "
            f"ΩT = {self.time:g} ({'converged' if conv.get('converged', True) else 'NOT converged'} by the diagnostic), "
            f"σ² ∈ [{lo[0]:.3g}, {hi[0]:.3g}], r_L/λ_c ∈ [{lo[1]:.3g}, {hi[1]:.3g}], "
            f"{self.provenance.get('design_points', '?')} design points × {self.n_realisations} realisations, "
            f"degree {self.emulator.degree} (max reduced χ² {float(np.max(self.emulator.reduced_chi2)):.2f}), "
            f"pixel-noise correction ≤ {100 * float(np.max(self.noise_fraction)):.0f} % of ⟨C_ℓ⟩"
        )


def build_artifact(
    campaign: Campaign,
    analysis: str | None = None,
    *,
    ells=None,
    time: float | None = None,
    degree: int = 2,
    z_margin: float = 2.0,
) -> EmulatorArtifact:
    """The emulator artifact of one analysis of a finished campaign (module docstring).

    Args:
        analysis: the analysis' name (default: the campaign's only or first one).
        ells: the multipoles to emulate (default: every ℓ ≥ 1 above the analysis' ℓ ≤ L removal
            up to the model's lmax = 2·nside − 1).
        time: force the model's ΩT (one of the campaign's times) instead of the diagnostic's.
        degree: polynomial degree of ln⟨C_ℓ⟩ in θ (needs ≥ (degree+1)(degree+2)/2 design points).
            2 by default: the design points' sampling noise is common to all ℓ (a far-wandering
            realisation raises every multipole), and a cubic over 25 points of 16 realisations
            followed it and made one-sky intervals too narrow (68 % coverage 0.42-0.46 against
            0.54-0.79 for the quadratic on synthetic IceCube-like skies).
        z_margin: the diagnostic's tolerance (:func:`convergence_table`).
    """
    spec = campaign.spec
    names = [a.name for a in spec.analyses]
    name = names[0] if analysis is None else analysis
    if name not in names:
        raise ValueError(f"analysis must be one of {names}; got {analysis!r}")
    view = spec.analyses[names.index(name)]
    missing = campaign.pending()
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(spec.design)} design points of {campaign.folder} are not done "
            f"(first: {missing[:5]}); run `jaxcr campaign run {campaign.folder}` first"
        )
    lmax = max_lmax(spec.model.nside)
    ell_min = 1 if view.remove_ell_max is None else view.remove_ell_max + 1
    ells = np.arange(ell_min, lmax + 1) if ells is None else np.asarray(ells, dtype=int)
    if ells.ndim != 1 or ells.size < 2 or np.any(np.diff(ells) <= 0) or ells[0] < 0 or ells[-1] > lmax:
        raise ValueError(f"ells must be ≥ 2 increasing multipoles in [0, {lmax}] (lmax = 2·nside − 1); got {ells}")
    if degree not in (1, 2, 3, 4):
        raise ValueError(f"degree must be 1, 2, 3 or 4; got {degree!r}")
    if time is not None and float(time) not in spec.times:
        raise ValueError(f"time must be one of the campaign's times {list(spec.times)}; got {time!r}")
    t_ell, _ = noise_transfer(view, spec.model.nside)
    corrected, noises, digests = [], [], hashlib.sha256()
    for k in range(len(spec.design)):
        arrays, _ = campaign.load_point(k)
        cl, noise = arrays[f"cl_{name}"], arrays["pixel_noise"]  # (R, T, L), (R, T)
        corrected.append(_corrected(cl, noise, t_ell))
        noises.append(noise)
        for key in sorted(arrays):
            digests.update(np.ascontiguousarray(arrays[key]).tobytes())
    c = np.stack(corrected)  # (K, R, T, L)
    rows, chosen = convergence_table(c[..., ells], spec.times, z_margin)
    j = chosen if time is None else spec.times.index(float(time))
    means, covs, log_means, log_covs, raised, fractions = [], [], [], [], [], []
    for k in range(len(spec.design)):
        mean, cov, log_mean, log_cov, low = _moments(c[k, :, j][:, ells])
        means.append(mean)
        covs.append(cov)
        log_means.append(log_mean)
        log_covs.append(log_cov)
        raised.append(low)
        fractions.append(noises[k][:, j].mean() * t_ell[ells] / np.where(mean > 0, mean, np.nan))
    mean_table, frac = np.array(means), np.array(fractions)
    bad = ~np.isfinite(frac) | (frac > MAX_NOISE_FRACTION)
    if bad.any():
        k, i = np.argwhere(bad)[0]
        raise ValueError(
            f"at ΩT = {spec.times[j]:g} the simulation's pixel noise is "
            f"{f'{100 * frac[k, i]:.0f} %' if np.isfinite(frac[k, i]) else 'all'} of ⟨C_ℓ⟩ (at most "
            f"{100 * MAX_NOISE_FRACTION:.0f} % allowed) at ℓ = {ells[i]} (design point {k}, σ² = "
            f"{np.exp(spec.design[k, 0]):.3g}, ρ = {np.exp(spec.design[k, 1]):.3g}): the model cannot resolve that "
            "multipole there. Raise the campaign's nside (noise ∝ 1/N_pix), choose an earlier time, or fit fewer ℓ (ells)"
        )
    low, high = spec.design.min(0), spec.design.max(0)
    box = ((low + high) / 2, (high - low) / 2)
    emulator = SpectrumEmulator.fit(spec.design, mean_table, np.array(covs), spec.model.n_realisations, degree, *box)
    log_emulator = SpectrumEmulator.fit_log(
        spec.design, np.array(log_means), np.array(log_covs), spec.model.n_realisations, degree, *box
    )
    return EmulatorArtifact(
        emulator=emulator,
        log_emulator=log_emulator,
        ells=ells,
        analysis=view,
        time=float(spec.times[j]),
        theta_low=low,
        theta_high=high,
        n_realisations=spec.model.n_realisations,
        noise_fraction=np.nanmax(frac, axis=0),
        provenance=dict(
            campaign=spec.as_dict(),
            campaign_folder=str(campaign.folder),
            design_points=len(spec.design),
            raised_to_floor=float(np.max(raised)),
            points_sha256=digests.hexdigest(),
            convergence=dict(
                table=rows,
                chosen_time=float(spec.times[chosen]),
                converged=bool(rows[chosen]["converged"] and chosen < len(spec.times) - 1),
                forced_time=None if time is None else float(time),
                z_margin=z_margin,
            ),
            built=_time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            versions=software_versions(),
            builder=f"jaxcr {__version__} build_artifact(degree={degree})",
        ),
    )


def check_artifact_path(path) -> Path:
    """The artifact file ``path`` must exist (a ``ValueError`` says how to make one)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"artifact={str(path)!r} does not exist: build one with `jaxcr campaign artifact CAMPAIGN_FOLDER --out {path}`"
        )
    _checks.check_positive_int("artifact size", path.stat().st_size)
    return path
