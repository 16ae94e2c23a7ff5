"""Campaigns: model spectra on a design of (σ², ρ) points, one independent task per point.

The expensive part of a fit is the model: at every design point θ_k = (ln σ², ln ρ) the
campaign backtracks N_B field realisations from every HEALPix pixel to several times ΩT_j and
stores, per realisation and time, the spectrum each observatory analysis (:class:`Analysis`:
band, background method, ℓ ≤ L removal, estimator) would publish of the unit-gradient sky
δI = r(−T)·ĝ (Eq. 7), and the map's own pixel-noise level (:func:`pixel_noise_level`). Each task
writes its own file, atomically, so tasks run in any order, on any machine, and a killed
campaign resumes where it stopped: point k always draws the realisations of stream 1 + k of the
campaign seed (:func:`jaxcr.random.realisation_keys`), whoever computes it.

:mod:`jaxcr.inference.scheduling` runs the tasks: in this process, a local process pool, a SLURM
job array or a Dask cluster. :func:`jaxcr.inference.artifact.build_artifact` turns a finished campaign into an
emulator artifact that fits load (:func:`jaxcr.inference.sky_fit.fit_sky`).

Folder layout: ``campaign.json`` (the :class:`CampaignSpec`: model, times, analyses, design) and
``points/point_<k>.npz`` (one per finished design point, with its θ, the spec's digest, the
versions and the wall time).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import platform
import sys
import time as _time
from pathlib import Path

import numpy as np

from .. import _checks, io
from .._dataset import dependency_versions
from .._version import __version__
from ..conventions import BackgroundMethod, Estimator
from ..field import as_option
from ..observations import Observatory, ObservedSpectrum
from .model import SpectrumModel

__all__ = [
    "Analysis",
    "CampaignSpec",
    "Campaign",
    "pixel_noise_level",
    "backtracked_maps",
    "design_grid",
    "software_versions",
    "CAMPAIGN_FORMAT",
]

CAMPAIGN_FORMAT = "jaxcr-campaign/1"


@dataclasses.dataclass(frozen=True)
class Analysis:
    """How an observatory turns its sky into a published spectrum (the operations of
    :func:`jaxcr.observatory.observed_spectra`): field of view as a declination band (degrees,
    equatorial), background method, ℓ ≤ L removal and estimator. ``name`` labels it in a campaign."""

    name: str
    dec_min_deg: float = -90.0
    dec_max_deg: float = 90.0
    background: BackgroundMethod = BackgroundMethod.KNOWN
    remove_ell_max: int | None = None
    estimator: Estimator = Estimator.PSEUDO

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"Analysis name must be letters, digits, '-' or '_'; got {self.name!r}")
        if not -90.0 <= float(self.dec_min_deg) < float(self.dec_max_deg) <= 90.0:
            raise ValueError(f"need -90 <= dec_min_deg < dec_max_deg <= 90; got {self.dec_min_deg}, {self.dec_max_deg}")
        object.__setattr__(self, "background", as_option(BackgroundMethod, "background", self.background))
        object.__setattr__(self, "estimator", as_option(Estimator, "estimator", self.estimator))
        if self.remove_ell_max is not None:
            _checks.check_positive_int("remove_ell_max", self.remove_ell_max)

    @classmethod
    def of_spectrum(cls, spectrum: ObservedSpectrum, name: str | None = None) -> "Analysis":
        """The analysis that made ``spectrum`` (its band, background method, removal, estimator)."""
        return cls._of(spectrum, spectrum.observatory, name)

    @classmethod
    def of_observatory(cls, observatory: Observatory, name: str | None = None) -> "Analysis":
        """The analysis of an observatory preset (:data:`jaxcr.observations.OBSERVATORIES`)."""
        return cls._of(observatory, observatory.name, name)

    @classmethod
    def _of(cls, source, label: str, name: str | None) -> "Analysis":
        return cls(
            name=name or "".join(c if c.isalnum() else "_" for c in label.lower()),
            dec_min_deg=float(source.dec_min_deg),
            dec_max_deg=float(source.dec_max_deg),
            background=source.background,
            remove_ell_max=source.remove_ell_max,
            estimator=source.estimator,
        )

    def mismatch(self, spectrum: ObservedSpectrum) -> list[str]:
        """The settings in which ``spectrum`` was made differently from this analysis."""
        other = Analysis.of_spectrum(spectrum, self.name)
        return [
            f"{key}: spectrum {getattr(other, key)!s}, analysis {getattr(self, key)!s}"
            for key in ("dec_min_deg", "dec_max_deg", "background", "remove_ell_max", "estimator")
            if getattr(other, key) != getattr(self, key)
        ]

    def apply(self, model: SpectrumModel) -> SpectrumModel:
        """``model`` seen through this analysis."""
        return dataclasses.replace(
            model,
            dec_min_deg=float(self.dec_min_deg),
            dec_max_deg=float(self.dec_max_deg),
            background=self.background,
            remove_ell_max=self.remove_ell_max,
            estimator=self.estimator,
        )

    def as_dict(self) -> dict:
        return {k: v.value if isinstance(v, enum.Enum) else v for k, v in dataclasses.asdict(self).items()}


def design_grid(sigma2_range, rho_range, points: int | tuple[int, int]) -> np.ndarray:
    """A regular design in θ = (ln σ², ln ρ): ``points`` per axis, log-spaced between the ends of
    ``sigma2_range`` and ``rho_range`` (positive, increasing). Shape (n_σ·n_ρ, 2)."""
    n = (points, points) if isinstance(points, (int, np.integer)) else tuple(points)
    axes = []
    for name, rng, k in (("sigma2_range", sigma2_range, n[0]), ("rho_range", rho_range, n[1])):
        lo, hi = (float(v) for v in rng)
        _checks.check_positive(name, np.array([lo, hi]))
        _checks.check_less(f"{name}[0]", lo, f"{name}[1]", hi)
        if _checks.check_positive_int("points", k) < 2:
            raise ValueError(f"points must be >= 2 per axis; got {k}")
        axes.append(np.linspace(np.log(lo), np.log(hi), k))
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)


@dataclasses.dataclass(frozen=True)
class CampaignSpec:
    """What a campaign computes. Lengths in λ_c, times in 1/Ω.

    Attributes:
        model: the model settings (nside, realisations N_B, modes, λ_min,max/λ_c, B0 and gradient
            directions in the equatorial frame, seed; ``dt`` fixed for every point; the model's own
            band and estimator are ignored: ``analyses`` say how the sky is observed).
        times: backtracking times ΩT at which spectra are stored (increasing); the artifact picks
            the fit's T among them by the convergence diagnostic.
        analyses: the observatory analyses whose spectra are stored.
        design: θ_k = (ln σ², ln ρ) of every design point, shape (K, 2); extended in place.
    """

    model: SpectrumModel
    times: tuple[float, ...]
    analyses: tuple[Analysis, ...]
    design: np.ndarray

    def __post_init__(self):
        if not isinstance(self.model, SpectrumModel):
            raise TypeError(f"model must be a SpectrumModel; got {type(self.model).__name__}")
        self.model.validate()
        times = tuple(float(t) for t in _checks.check_increasing_times("times", np.asarray(self.times, dtype=float)))
        if times[0] <= 0:
            raise ValueError(f"times must be > 0; got {times[0]}")
        object.__setattr__(self, "times", times)
        analyses = tuple(self.analyses)
        if not analyses or not all(isinstance(a, Analysis) for a in analyses):
            raise TypeError("analyses must be a non-empty sequence of Analysis(...)")
        if len({a.name for a in analyses}) != len(analyses):
            raise ValueError("analysis names must be unique")
        object.__setattr__(self, "analyses", analyses)
        design = np.asarray(self.design, dtype=float)
        if design.ndim != 2 or design.shape[1] != 2 or len(design) == 0 or not np.all(np.isfinite(design)):
            raise ValueError(f"design must be finite (ln σ², ln ρ) points of shape (K, 2); got {design.shape}")
        object.__setattr__(self, "design", design)
        if self.model.dt is None:  # the smallest default step over the design: one step for every point
            steps = [self.model.resolved(theta).dt for theta in design]
            object.__setattr__(self, "model", dataclasses.replace(self.model, dt=float(min(steps))))  # type: ignore[type-var]
        else:
            for theta in design:
                self.model.resolved(theta)  # raises if dt does not resolve the field at θ

    def digest(self) -> str:
        """SHA-256 of everything but the design: point files of one digest belong together."""
        core = dict(model=self.model.as_dict(), times=list(self.times), analyses=[a.as_dict() for a in self.analyses])
        return hashlib.sha256(io.to_json(core).encode()).hexdigest()[:16]

    def as_dict(self) -> dict:
        return dict(
            format=CAMPAIGN_FORMAT,
            model=self.model.as_dict(),
            times=list(self.times),
            analyses=[a.as_dict() for a in self.analyses],
            design=self.design.tolist(),
            digest=self.digest(),
        )

    @classmethod
    def from_dict(cls, d: dict) -> "CampaignSpec":
        if d.get("format") != CAMPAIGN_FORMAT:
            raise ValueError(f"not a {CAMPAIGN_FORMAT} campaign (format {d.get('format')!r})")
        return cls(
            model=SpectrumModel.from_dict(d["model"]),
            times=tuple(d["times"]),
            analyses=tuple(Analysis(**a) for a in d["analyses"]),
            design=np.asarray(d["design"], dtype=float),
        )


def pixel_noise_level(maps, cl_full) -> np.ndarray:
    """The white pixel-noise level N̂ (full-sky C_ℓ) of backtracked maps, Eq. 12 measured.

    At late times neighbouring pixels' orbits are uncorrelated and the map carries white noise
    N ≈ (4π/N_pix)·2T gᵀKg (Eq. 12) on top of the sky's C_ℓ; earlier, the orbits of neighbouring
    pixels are still correlated and the noise is smaller. Measured from the map itself: the pixel
    variance holds Σ_ℓ (2ℓ+1) C_ℓ/4π over all N_pix modes of the map, the full-sky spectrum
    ``cl_full`` (..., lmax+1) the (lmax+1)² modes with ℓ ≤ lmax, so the power left over, spread
    over the N_pix − (lmax+1)² modes beyond lmax, is the white level:
    N̂ = [4π Var − Σ_{1≤ℓ≤lmax} (2ℓ+1) C_ℓ] / (N_pix − (lmax+1)²). It is 0 for a smooth map and
    Eq. 12 once the map is white. Shape (...,).
    """
    maps, cl_full = np.asarray(maps), np.asarray(cl_full)
    npix, n_ell = maps.shape[-1], cl_full.shape[-1]
    ell = np.arange(n_ell)
    captured = np.sum(((2 * ell + 1) * cl_full)[..., 1:], axis=-1)
    return np.maximum(4 * np.pi * maps.var(-1) - captured, 0.0) / (npix - n_ell**2)


def backtracked_maps(model: SpectrumModel, theta, keys, times) -> tuple[np.ndarray, np.ndarray]:
    """Unit-gradient maps δI = r(−T)·ĝ (Eq. 7) of the realisations ``keys`` of ``model`` at
    θ = (ln σ², ln ρ) (``dt`` set), every pixel backtracked to each ΩT of ``times``, shape (R, T, P),
    and each map's pixel-noise level (:func:`pixel_noise_level`, from its full-sky spectrum), (R, T)."""
    import jax.numpy as jnp

    from ..backtracking import backtrack
    from ..forward import sample_fields, sky_maps, sky_spectra

    sky = model.sky_model(jnp.asarray(theta))
    full = Analysis("full").apply(model).sky_model(jnp.asarray(theta))
    traj = backtrack(sample_fields(sky, keys), sky.directions, list(times), **sky.solver_options())
    maps = np.stack(
        [np.asarray(sky_maps(sky, traj.positions[:, j], traj.momenta[:, j]))[:, 0] for j in range(len(times))], 1
    )
    noise = np.stack(
        [pixel_noise_level(m, np.asarray(sky_spectra(full, m[:, None]))[:, 0]) for m in maps.swapaxes(0, 1)], 1
    )
    return maps, noise


def _point_spectra(spec: CampaignSpec, index: int) -> dict:
    """Backtrack design point ``index`` and return its arrays (the task's whole computation)."""
    import jax.numpy as jnp

    from ..forward import sky_spectra
    from ..random import realisation_keys

    theta = spec.design[index]
    model = spec.model
    keys = realisation_keys(model.seed, model.n_realisations, stream=1 + index)
    maps, noise = backtracked_maps(model, theta, keys, spec.times)
    out = {"pixel_noise": noise, "theta": np.asarray(theta)}
    for a in spec.analyses:
        view = a.apply(model).sky_model(jnp.asarray(theta))
        # (R, T, L): realisations first, as everywhere else
        out[f"cl_{a.name}"] = np.stack(
            [np.asarray(sky_spectra(view, maps[:, j, None]))[:, 0] for j in range(len(spec.times))], 1
        )
    return out


class Campaign:
    """A campaign folder (module docstring): its spec, which points are done, and running them."""

    def __init__(self, folder, spec: CampaignSpec):
        self.folder = Path(folder)
        self.spec = spec

    @classmethod
    def create(cls, folder, spec: CampaignSpec, exist_ok: bool = False) -> "Campaign":
        """Write ``campaign.json`` into ``folder``. An existing campaign there is opened instead
        when ``exist_ok`` and its spec is the same (else an error that says what differs)."""
        folder = Path(folder)
        if (folder / "campaign.json").exists():
            old = cls.open(folder)
            if not exist_ok or old.spec.digest() != spec.digest() or not np.array_equal(old.spec.design, spec.design):
                raise ValueError(
                    f"{folder} already holds a campaign (digest {old.spec.digest()}, {len(old.spec.design)} points); "
                    "open it with Campaign.open / `jaxcr campaign run`, extend it, or choose another folder"
                )
            return old
        io.check_writable("folder", folder / "campaign.json")
        (folder / "points").mkdir(parents=True, exist_ok=True)
        campaign = cls(folder, spec)
        campaign._write_spec()
        return campaign

    @classmethod
    def open(cls, folder) -> "Campaign":
        path = Path(folder) / "campaign.json"
        try:
            spec = CampaignSpec.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise ValueError(f"{folder} is not a campaign folder (no campaign.json); create one first") from None
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is damaged ({err}); recreate the campaign") from None
        return cls(folder, spec)

    def _write_spec(self) -> None:
        text = json.dumps(self.spec.as_dict(), indent=1)
        io.atomic_write(self.folder / "campaign.json", lambda tmp: Path(tmp).write_text(text))

    def point_path(self, index: int) -> Path:
        return self.folder / "points" / f"point_{index:05d}.npz"

    def done(self) -> list[int]:
        return [k for k in range(len(self.spec.design)) if self.point_path(k).exists()]

    def pending(self) -> list[int]:
        return [k for k in range(len(self.spec.design)) if not self.point_path(k).exists()]

    def extend(self, thetas) -> list[int]:
        """Append design points (ln σ², ln ρ) not already in the design; returns their indices.
        Existing points keep their indices and files, so an extended campaign reuses them."""
        thetas = np.atleast_2d(np.asarray(thetas, dtype=float))
        new = [t for t in thetas if not np.any(np.all(np.isclose(self.spec.design, t, atol=1e-12), axis=1))]
        if not new:
            return []
        first = len(self.spec.design)
        self.spec = dataclasses.replace(self.spec, design=np.concatenate([self.spec.design, np.array(new)]))
        self._write_spec()
        return list(range(first, len(self.spec.design)))

    def run_task(self, index: int) -> Path:
        """Compute design point ``index`` and write its file (nothing to do if it exists)."""
        if (
            isinstance(index, bool)
            or not isinstance(index, (int, np.integer))
            or not 0 <= index < len(self.spec.design)
        ):
            raise ValueError(f"index must be an integer in [0, {len(self.spec.design) - 1}]; got {index!r}")
        path = self.point_path(int(index))
        if path.exists():
            return path
        _checks.require_x64("a campaign task")
        t0 = _time.perf_counter()
        arrays = _point_spectra(self.spec, int(index))
        meta = dict(
            format=CAMPAIGN_FORMAT,
            digest=self.spec.digest(),
            index=int(index),
            theta=self.spec.design[index].tolist(),
            wall_time_s=_time.perf_counter() - t0,
            host=platform.node(),
            versions=software_versions(),
            finished=_time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        return io.save_checkpoint(path, arrays, meta)

    def load_point(self, index: int) -> tuple[dict, dict]:
        arrays, meta = io.load_checkpoint(self.point_path(index))
        if meta.get("digest") != self.spec.digest():
            raise ValueError(
                f"{self.point_path(index)} was made by another campaign spec (digest {meta.get('digest')} vs "
                f"{self.spec.digest()}); delete it to recompute"
            )
        if not np.allclose(arrays["theta"], self.spec.design[index], atol=1e-12):
            raise ValueError(f"{self.point_path(index)} holds θ = {arrays['theta']}, not the design's point {index}")
        return arrays, meta

    def status(self) -> str:
        done, total = len(self.done()), len(self.spec.design)
        times = [self.load_point(k)[1]["wall_time_s"] for k in self.done()]
        line = f"campaign {self.folder}: {done}/{total} design points done"
        if times:
            line += f", {np.mean(times):.1f} s per point (mean), ≈ {np.mean(times) * (total - done) / 60:.1f} min left on one worker"
        m = self.spec.model
        return (
            f"{line}\n  model: nside {m.nside}, N_B {m.n_realisations}, {m.n_modes} modes, dt {m.dt:.4g}/Ω, "
            f"ΩT = {', '.join(f'{t:g}' for t in self.spec.times)}; analyses: "
            f"{', '.join(a.name for a in self.spec.analyses)}"
        )


def software_versions() -> dict:
    """jaxcr, Python and the dependencies' versions, recorded with every saved result."""
    return dict(jaxcr=__version__, python=sys.version.split()[0], **dependency_versions())
