"""Emulator artifacts: a finished campaign condensed into the model a fit needs, with provenance.

:func:`build_artifact` takes one analysis of a :class:`jaxcr.inference.campaign.Campaign`
(:func:`artifact_from_spectra` does the same for spectra computed any other way) and

1. removes the simulation's own pixel noise (Eq. 12) from every realisation's spectrum: the
   white level N̂ measured on the map (:func:`jaxcr.spectrum_model.pixel_noise_level`) times
   the analysis' response t_ℓ to white noise (:meth:`jaxcr.analysis.Analysis.noise_response`; the mask, the ring-mean
   removal of time-scrambling and the ℓ ≤ L removal shape it). The noise's fluctuations stay in
   the realisations' scatter: the cosmic variance is then slightly overestimated where the pixel
   noise is comparable to the signal (conservative; removing a Gaussian estimate of that share
   made the intervals of synthetic-sky fits too narrow);
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

import dataclasses
import hashlib
import time as _time
from pathlib import Path

import numpy as np

from .. import _checks, io
from .._version import __version__
from ..analysis import Analysis
from ..parametrisation import Parametrisation
from ..spectra import max_lmax
from ..spectrum_model import SpectrumModel
from .campaign import Campaign, software_versions
from .convergence import MAX_NOISE_FRACTION, convergence_table, noise_error, passing_ell_max, separation_time
from .emulator import SpectrumEmulator

__all__ = ["EmulatorArtifact", "build_artifact", "artifact_from_spectra", "shipped_artifacts", "shipped_artifact_for"]

ARTIFACT_FORMAT = "jaxcr-emulator/2"


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


@dataclasses.dataclass(frozen=True)
class EmulatorArtifact:
    """An emulator of one analysis' model spectrum at one T, with its provenance.

    Attributes:
        emulator: ⟨C_ℓ⟩(θ) and S(θ) of the unit-gradient sky (a = 1), ℓ in ``ells``.
        log_emulator: ⟨ln C_ℓ⟩(θ) and Cov(ln C_ℓ, ln C_ℓ') of the same sky (the log-normal likelihood).
        ells: the emulated multipoles.
        analysis: the observatory analysis the spectra went through.
        time: the model's backtracking time (chosen by the diagnostic unless forced): ΩT, or a
            multiple of t_sep(σ², ρ) for a campaign with ``separation_times`` (:meth:`time_at`).
        parameters: the named parameters θ stands for, their boxes the design's extent (fits stay inside).
        n_realisations: N_B per design point.
        noise_fraction: per ℓ, the largest pixel-noise correction N̂ t_ℓ / ⟨C_ℓ⟩ over the points.
        provenance: campaign spec and digest, point-file hash, diagnostic table, versions, date.
    """

    emulator: SpectrumEmulator
    log_emulator: SpectrumEmulator
    ells: np.ndarray
    analysis: Analysis
    time: float
    parameters: Parametrisation
    n_realisations: int
    noise_fraction: np.ndarray
    provenance: dict

    _ARRAYS = ("centre", "scale", "coef", "ftf_inv", "rel", "rel_emu", "reduced_chi2")

    @property
    def theta_low(self) -> np.ndarray:
        """The box's lower corner in the coordinates θ."""
        return self.parameters.coordinate_low

    @property
    def theta_high(self) -> np.ndarray:
        return self.parameters.coordinate_high

    @property
    def version(self) -> str:
        """SHA-256 (16 hex digits) of the artifact's arrays and parameters: equal for equal artifacts."""
        h = hashlib.sha256()
        for emu in (self.emulator, self.log_emulator):
            for name in self._ARRAYS:
                h.update(np.ascontiguousarray(getattr(emu, name), dtype=float).tobytes())
        for arr in (self.ells, self.theta_low, self.theta_high):
            h.update(np.ascontiguousarray(arr, dtype=float).tobytes())
        h.update(repr((self.analysis.as_dict(), self.time, self.emulator.degree)).encode())
        h.update(io.to_json(self.parameters.as_dict()).encode())
        return h.hexdigest()[:16]

    def save(self, path) -> Path:
        """Write the artifact (one ``.npz``: arrays plus a JSON record), atomically."""
        arrays = {name: getattr(self.emulator, name) for name in self._ARRAYS}
        arrays |= {f"log_{name}": getattr(self.log_emulator, name) for name in self._ARRAYS}
        arrays |= dict(ells=self.ells, noise_fraction=self.noise_fraction)
        meta = dict(
            format=ARTIFACT_FORMAT,
            version=self.version,
            degree=self.emulator.degree,
            analysis=self.analysis.as_dict(),
            time=self.time,
            parameters=self.parameters.as_dict(),
            n_realisations=self.n_realisations,
            provenance=self.provenance,
        )
        return io.save_checkpoint(path, arrays, meta)

    @classmethod
    def load(cls, path) -> EmulatorArtifact:
        """Read an artifact written by :meth:`save`; checks its format and its version hash."""
        arrays, meta = io.load_checkpoint(path, kind="artifact")
        if meta.get("format") != ARTIFACT_FORMAT:
            raise ValueError(
                f"{path} is not a {ARTIFACT_FORMAT} artifact (format {meta.get('format')!r}): build it again with "
                "`jaxcr campaign artifact`"
            )
        emulator = SpectrumEmulator(**{name: arrays[name] for name in cls._ARRAYS}, degree=int(meta["degree"]))
        log_emulator = SpectrumEmulator(
            **{name: arrays[f"log_{name}"] for name in cls._ARRAYS}, degree=int(meta["degree"]), log_moments=True
        )
        out = cls(
            emulator=emulator,
            log_emulator=log_emulator,
            ells=arrays["ells"].astype(int),
            analysis=Analysis.from_dict(meta["analysis"]),
            time=float(meta["time"]),
            parameters=Parametrisation.from_dict(meta["parameters"]),
            n_realisations=int(meta["n_realisations"]),
            noise_fraction=arrays["noise_fraction"],
            provenance=meta["provenance"],
        )
        if out.version != meta.get("version"):
            raise ValueError(
                f"artifact {path}: its arrays do not match its recorded version {meta.get('version')}: damaged"
            )
        return out

    @property
    def separation_times(self) -> bool:
        """True when ``time`` is a multiple of each point's t_sep(σ², ρ) rather than one ΩT."""
        return bool(self.provenance.get("campaign", {}).get("separation_times", False))

    def time_at(self, values) -> float:
        """The model's ΩT at the named ``values``: ``time``, or ``time`` × t_sep(σ², ρ) there."""
        scale = separation_time(values["sigma2"], values["rho"]) if self.separation_times else 1.0
        return self.time * float(scale)

    def time_text(self) -> str:
        return f"ΩT = {self.time:g} t_sep(σ², ρ)" if self.separation_times else f"ΩT = {self.time:g}"

    def campaign_model(self) -> SpectrumModel:
        """The campaign's :class:`jaxcr.spectrum_model.SpectrumModel` (for synthetic skies made like its points)."""
        return SpectrumModel.from_dict(self.provenance["campaign"]["model"])

    def _field_level(self) -> str:
        level = self.provenance.get("campaign", {}).get("model", {}).get("field_precision")
        return f" (field {level})" if level else ""

    def summary(self) -> str:
        conv = self.provenance.get("convergence", {})
        box = ", ".join(f"{p.label} ∈ [{p.low:.3g}, {p.high:.3g}]" for p in self.parameters.parameters)
        return (
            f"emulator artifact {self.version} ({self.analysis.name}): ℓ = {self.ells[0]}..{self.ells[-1]}, "
            f"{self.time_text()} ({'converged' if conv.get('converged', True) else 'NOT converged'} by the diagnostic), "
            f"{box}, {self.provenance.get('design_points', '?')} design points × {self.n_realisations} realisations"
            f"{self._field_level()}, "
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
        ells: the multipoles to emulate (default: from the first ℓ above the analysis' ℓ ≤ L removal
            up to the largest ℓ whose pixel noise passes at the chosen time, :func:`passing_ell_max`;
            given ells that do not pass are refused with the ℓ ranges that pass at each time).
        time: force the model's ΩT (one of the campaign's times) instead of the diagnostic's.
        degree: polynomial degree of ln⟨C_ℓ⟩ in θ (needs at least as many design points as
            monomials: 6 for degree 2 in two parameters, 10 in three). 2 by default: the design
            points' sampling noise is common to all ℓ (a far-wandering realisation raises every
            multipole), and a cubic over 25 points of 16 realisations followed it and made one-sky
            intervals too narrow (68 % coverage 0.42-0.46 against 0.54-0.79 for the quadratic on
            synthetic IceCube-like skies).
        z_margin: the diagnostic's tolerance (:func:`convergence_table`).
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
    spectra, noises, digests = [], [], hashlib.sha256()
    for k in range(len(spec.design)):
        arrays, _ = campaign.load_point(k)
        spectra.append(arrays[f"cl_{name}"])  # (R, T, L)
        noises.append(arrays["pixel_noise"])  # (R, T)
        for key in sorted(arrays):
            digests.update(np.ascontiguousarray(arrays[key]).tobytes())
    provenance = dict(campaign=spec.as_dict(), campaign_folder=str(campaign.folder), points_sha256=digests.hexdigest())
    return artifact_from_spectra(
        spec.parameters,
        spec.design,
        np.stack(spectra),
        np.stack(noises),
        spec.times,
        spec.analyses[names.index(name)],
        spec.model.nside,
        ells=ells,
        time=time,
        degree=degree,
        z_margin=z_margin,
        provenance=provenance,
    )


def _check_artifact_options(ells, degree, time, times, lmax, analysis: Analysis):
    ell_min = 1 if analysis.remove_ell_max is None else analysis.remove_ell_max + 1
    ells = np.arange(ell_min, lmax + 1) if ells is None else np.asarray(ells, dtype=int)
    if ells.ndim != 1 or ells.size < 2 or np.any(np.diff(ells) <= 0) or ells[0] < 0 or ells[-1] > lmax:
        raise ValueError(f"ells must be ≥ 2 increasing multipoles in [0, {lmax}] (lmax = 2·nside − 1); got {ells}")
    if degree not in (1, 2, 3, 4):
        raise ValueError(f"degree must be 1, 2, 3 or 4; got {degree!r}")
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
    degree: int = 2,
    z_margin: float = 2.0,
    provenance: dict | None = None,
) -> EmulatorArtifact:
    """The emulator artifact of per-realisation model spectra on a design (module docstring).

    Args:
        parameters: the named parameters of the design's coordinates.
        design: θ_k, shape (K, P).
        spectra: per design point, realisation and time, the analysis' spectrum (K, R, T, lmax+1).
        pixel_noise: each map's white pixel-noise level N̂ (K, R, T) (zeros: none to remove).
        times: the times ΩT of axis T; analysis, nside: how the spectra were made.
        ells, time, degree, z_margin: as for :func:`build_artifact`.
        provenance: recorded with the artifact (the design size, diagnostic, versions and date are added).
    """
    design, spectra, pixel_noise = (np.asarray(x, dtype=float) for x in (design, spectra, pixel_noise))
    times = tuple(float(t) for t in times)
    k_points, n_real = spectra.shape[:2]
    if design.shape != (k_points, len(parameters)) or pixel_noise.shape != spectra.shape[:3]:
        raise ValueError(
            f"design {design.shape}, spectra {spectra.shape} and pixel_noise {pixel_noise.shape} do not match "
            f"(K points, R realisations, {len(times)} times, {len(parameters)} parameters)"
        )
    lmax = max_lmax(nside)
    auto_ells = ells is None
    ells = _check_artifact_options(ells, degree, time, times, lmax, analysis)
    t_ell, _ = analysis.noise_response(nside)
    c = spectra - pixel_noise[..., None] * t_ell  # noise-corrected, (K, R, T, L)
    passing = passing_ell_max(c, pixel_noise, t_ell, ells)
    while True:  # ells None: cut the range to what the pixel noise allows at the chosen time
        rows, chosen = convergence_table(c[..., ells], times, z_margin)
        j = chosen if time is None else times.index(float(time))
        if not auto_ells or passing[j] is None or passing[j] >= ells[-1]:
            break
        ells = ells[ells <= passing[j]]
    moments = [_moments(c[k, :, j][:, ells]) for k in range(k_points)]
    means, covs, log_means, log_covs, raised = (np.array([m[i] for m in moments]) for i in range(5))
    frac = np.array(
        [pixel_noise[k][:, j].mean() * t_ell[ells] / np.where(means[k] > 0, means[k], np.nan) for k in range(k_points)]
    )
    if (~np.isfinite(frac) | (frac > MAX_NOISE_FRACTION)).any():
        raise noise_error(frac, times, j, ells, parameters.values, design, passing)
    low, high = design.min(0), design.max(0)
    box = ((low + high) / 2, (high - low) / 2)
    emulator = SpectrumEmulator.fit(design, means, covs, n_real, degree, *box)
    log_emulator = SpectrumEmulator.fit_log(design, log_means, log_covs, n_real, degree, *box)
    return EmulatorArtifact(
        emulator=emulator,
        log_emulator=log_emulator,
        ells=ells,
        analysis=analysis,
        time=float(times[j]),
        parameters=parameters.design_box(design),
        n_realisations=int(n_real),
        noise_fraction=np.nanmax(frac, axis=0),
        provenance=dict(provenance or {})
        | dict(
            design_points=int(k_points),
            raised_to_floor=float(np.max(raised)),
            convergence=dict(
                table=rows,
                chosen_time=float(times[chosen]),
                converged=bool(rows[chosen]["converged"] and chosen < len(times) - 1),
                forced_time=None if time is None else float(time),
                z_margin=z_margin,
            ),
            built=_time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            versions=software_versions(),
            builder=f"jaxcr {__version__} artifact_from_spectra(degree={degree})",
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


SHIPPED = Path(__file__).resolve().parent.parent / "data"  # the artifacts shipped with jaxcr (jaxcr/data/*.npz)


def shipped_artifacts() -> list[Path]:
    """The emulator artifacts shipped with the package (``jaxcr/data``), sorted by name."""
    return sorted(SHIPPED.glob("*.npz"))


def shipped_artifact_for(analysis: Analysis) -> EmulatorArtifact:
    """The shipped artifact made for ``analysis`` (same band, background method, ℓ ≤ L removal and
    estimator); a ``ValueError`` lists the shipped ones and says how to build another."""
    found = [EmulatorArtifact.load(p) for p in shipped_artifacts()]
    for artifact in found:
        if not artifact.analysis.mismatch(analysis):
            return artifact
    names = ", ".join(
        f"{a.analysis.name} ({a.analysis.dec_min_deg:g}° < δ < {a.analysis.dec_max_deg:g}°)" for a in found
    )
    raise ValueError(
        f"no shipped artifact is made for this spectrum's analysis ({analysis.as_dict()}); shipped: {names or 'none'}. "
        "Build one: `jaxcr campaign create FOLDER --observatory ...`, `jaxcr campaign run FOLDER`, "
        "`jaxcr campaign artifact FOLDER --out emulator.npz`, then `jaxcr fit SPECTRUM --artifact emulator.npz`"
    )
