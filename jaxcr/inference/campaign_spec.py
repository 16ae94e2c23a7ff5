"""What a campaign computes: the model, its stored times, the analyses and the design of named-parameter
points (:class:`CampaignSpec`); :mod:`jaxcr.inference.campaign` holds the folder and runs it."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from .. import _checks, io
from ..analysis import Analysis
from ..parametrisation import Parametrisation
from ..spectrum_model import SpectrumModel
from .convergence import separation_time

__all__ = ["CampaignSpec", "CAMPAIGN_FORMAT"]

CAMPAIGN_FORMAT = "jaxcr-campaign/2"


@dataclasses.dataclass(frozen=True)
class CampaignSpec:
    """What a campaign computes. Lengths in r_L, times in 1/Ω.

    Attributes:
        model: the model settings (:class:`jaxcr.spectrum_model.SpectrumModel`: nside, N_B,
            turbulence model, directions, seed, field precision and layout; the model's own
            analysis is ignored: ``analyses`` say how the sky is observed).
        times: backtracking times ΩT at which spectra are stored (increasing); the artifact picks
            the fit's T among them by the convergence diagnostic.
        analyses: the observatory analyses whose spectra are stored.
        parameters: the named parameters the design varies, with their boxes.
        design: θ_k of every design point, shape (K, P), in the parameters' coordinates; extended in place.
        step_per_point: with the model's ``dt`` unset, each point takes the default Boris step of
            its own field (:func:`jaxcr.default_step`; recorded in its file); False: the smallest
            default step over the design for every point. A given ``dt`` is used everywhere.
        separation_times: ``times`` are multiples of each point's separation time t_sep(σ², ρ)
            (:func:`jaxcr.inference.convergence.separation_time`), so that every point is followed
            to the same stage of its convergence (:meth:`point_times`); False: ΩT for every point.
        time_scales: per design point, a factor on its times (K,); None: 1 everywhere. Raised by
            :meth:`jaxcr.inference.campaign.Campaign.lengthen` where the diagnostic finds a point still changing
            at the last stored times (the separation law understates its time to converge), so
            that the point is followed further while its stored times stay at the same multiples.
        realisations: per design point, its number of realisations N_B,k (K,); None: the model's
            N_B everywhere. Raised by :meth:`jaxcr.inference.campaign.Campaign.add_realisations` where
            a point's mean is too uncertain; point k's realisations are always 0 … N_B,k − 1 of its
            stream, so the ones computed before are kept.
    """

    model: SpectrumModel
    times: tuple[float, ...]
    analyses: tuple[Analysis, ...]
    parameters: Parametrisation
    design: np.ndarray
    step_per_point: bool = False
    separation_times: bool = False
    time_scales: np.ndarray | None = None
    realisations: np.ndarray | None = None

    def __post_init__(self):
        if not isinstance(self.model, SpectrumModel):
            raise TypeError(f"model must be a SpectrumModel; got {type(self.model).__name__}")
        if not isinstance(self.parameters, Parametrisation):
            raise TypeError(f"parameters must be a Parametrisation; got {type(self.parameters).__name__}")
        self.model.turbulence.check_names(self.parameters.names)
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
        p = len(self.parameters)
        if design.ndim != 2 or design.shape[1] != p or len(design) == 0 or not np.all(np.isfinite(design)):
            raise ValueError(
                f"design must be finite points of shape (K, {p}) in the coordinates of {list(self.parameters.names)}; "
                f"got shape {design.shape}"
            )
        object.__setattr__(self, "design", design)
        scales = np.ones(len(design)) if self.time_scales is None else np.asarray(self.time_scales, dtype=float)
        if scales.shape != (len(design),) or not np.all(np.isfinite(scales) & (scales > 0)):
            raise ValueError(
                f"time_scales must be one finite factor > 0 per design point, shape ({len(design)},); got {scales!r}"
            )
        object.__setattr__(self, "time_scales", scales)
        base = self.model.n_realisations
        counts = np.full(len(design), base) if self.realisations is None else np.asarray(self.realisations)
        if counts.shape != (len(design),) or not np.all(np.isfinite(counts)) or np.any(counts != np.round(counts)):
            raise ValueError(
                f"realisations must be one integer per design point, shape ({len(design)},); got {self.realisations!r}"
            )
        if np.any(counts < base):
            raise ValueError(
                f"realisations must be at least the model's N_B = {base} at every point; got {counts.tolist()}"
            )
        object.__setattr__(self, "realisations", counts.astype(int))
        _checks.check_bool("step_per_point", self.step_per_point)
        _checks.check_bool("separation_times", self.separation_times)
        if self.model.dt is None and not self.step_per_point:  # the smallest default step over the design
            object.__setattr__(self, "model", self.model.replace(dt=float(min(self.steps()))))
        elif self.model.dt is not None:
            for k in range(len(design)):
                self.model.resolved(self.values(k))  # raises if dt does not resolve the field there

    @classmethod
    def on_grid(cls, model, times, analyses, parameters: Parametrisation, points) -> CampaignSpec:
        """A spec whose design is the regular grid of ``points`` per parameter over its box."""
        return cls(model=model, times=times, analyses=analyses, parameters=parameters, design=parameters.grid(points))

    def values(self, index: int) -> dict:
        """The named physical values of design point ``index``."""
        return self.parameters.values(self.design[index])

    def nearest_point(self, values) -> tuple[int, float]:
        """The design point nearest the named ``values`` and its distance, the largest |Δθ| over the
        parameters' coordinates (e-folds for log parameters)."""
        distance = np.abs(self.design - np.asarray(self.parameters.coordinates(values))).max(axis=1)
        k = int(np.argmin(distance))
        return k, float(distance[k])

    def model_at(self, index: int) -> SpectrumModel:
        """The model of design point ``index``, its Boris step set (the spec's or the point's own)."""
        return self.model.resolved(self.values(index))

    def time_scale(self, index: int) -> float:
        """The factor on the times of design point ``index`` (``time_scales``; 1 unless lengthened)."""
        return float(np.asarray(self.time_scales)[index])

    def point_times(self, index: int) -> tuple[float, ...]:
        """The backtracking times ΩT of design point ``index``: ``times``, or with
        ``separation_times`` ``times`` × t_sep(σ², ρ) of the point; times its ``time_scale``."""
        unit = self.time_scale(index)
        if self.separation_times:
            values = self.values(index)
            unit *= float(separation_time(values["sigma2"], values["rho"]))
        return tuple(t * unit for t in self.times)

    def n_realisations(self, index: int) -> int:
        """N_B,k of design point ``index`` (``realisations``; the model's N_B unless raised)."""
        return int(np.asarray(self.realisations)[index])

    def more_realisations(self) -> list[int]:
        """The design points given more realisations than the model's N_B."""
        return [int(k) for k in np.flatnonzero(np.asarray(self.realisations) != self.model.n_realisations)]

    def lengthened(self) -> list[int]:
        """The design points whose times were lengthened (``time_scale`` ≠ 1)."""
        return [int(k) for k in np.flatnonzero(self.time_scales != 1.0)]

    def time_range(self) -> tuple[float, float]:
        """The smallest and the largest ΩT any design point is backtracked to."""
        every = [t for k in range(len(self.design)) for t in self.point_times(k)]
        return min(every), max(every)

    def times_text(self) -> str:
        """The stored times as a reader sees them ("50, 100" or "1, 2, 4 × t_sep(σ², ρ)")."""
        text = ", ".join(f"{t:g}" for t in self.times)
        text = f"{text} × t_sep(σ², ρ) of each point" if self.separation_times else text
        longer = self.lengthened()
        if longer:
            factors = ", ".join(f"×{f:g}" for f in sorted({self.time_scale(k) for k in longer}))
            text += f" ({factors} at {len(longer)} of {len(self.design)} points: {longer})"
        return text

    def points_text(self, indices) -> str:
        """Design points by index and named values, e.g. ``#0 (sigma2 = 0.3, rho = 0.01)``."""
        return ", ".join(
            f"#{k} (" + ", ".join(f"{n} = {v:.3g}" for n, v in self.values(k).items()) + ")" for k in indices
        )

    def steps(self) -> list[float]:
        """The Boris step (1/Ω) each design point runs with."""
        return [float(self.model_at(k).dt or 0.0) for k in range(len(self.design))]

    def point_particle_steps(self) -> list[float]:
        """N_B,k · N_pix · (its largest ΩT)/dt of each design point: the work of its task."""
        pixels = 12 * self.model.nside**2
        return [self.n_realisations(k) * pixels * self.point_times(k)[-1] / dt for k, dt in enumerate(self.steps())]

    def particle_steps(self) -> float:
        """Σ over the points of :meth:`point_particle_steps`: the work of the campaign."""
        return float(sum(self.point_particle_steps()))

    def digest(self) -> str:
        """SHA-256 of everything but the design: point files of one digest belong together."""
        core: dict[str, object] = dict(
            model=self.model.as_dict(),
            times=list(self.times),
            analyses=[a.as_dict() for a in self.analyses],
            parameters=self.parameters.as_dict(),
        )
        if self.step_per_point:  # (absent otherwise: the digests of earlier campaigns are unchanged)
            core["step_per_point"] = True
        if self.separation_times:
            core["separation_times"] = True
        return hashlib.sha256(io.to_json(core).encode()).hexdigest()[:16]

    def as_dict(self) -> dict:
        return (
            dict(
                format=CAMPAIGN_FORMAT,
                model=self.model.as_dict(),
                times=list(self.times),
                analyses=[a.as_dict() for a in self.analyses],
                parameters=self.parameters.as_dict(),
                design=self.design.tolist(),
                step_per_point=self.step_per_point,
                separation_times=self.separation_times,
                digest=self.digest(),
            )
            | ({"time_scales": np.asarray(self.time_scales).tolist()} if self.lengthened() else {})
            | ({"realisations": np.asarray(self.realisations).tolist()} if self.more_realisations() else {})
        )

    @classmethod
    def from_dict(cls, d: dict) -> CampaignSpec:
        if d.get("format") != CAMPAIGN_FORMAT:
            raise ValueError(
                f"not a {CAMPAIGN_FORMAT} campaign (format {d.get('format')!r}); campaigns of jaxcr < 0.3 must be "
                "created again"
            )
        return cls(
            model=SpectrumModel.from_dict(d["model"]),
            times=tuple(d["times"]),
            analyses=tuple(Analysis.from_dict(a) for a in d["analyses"]),
            parameters=Parametrisation.from_dict(d["parameters"]),
            design=np.asarray(d["design"], dtype=float),
            step_per_point=bool(d.get("step_per_point", False)),
            separation_times=bool(d.get("separation_times", False)),
            time_scales=None if d.get("time_scales") is None else np.asarray(d["time_scales"], dtype=float),
            realisations=None if d.get("realisations") is None else np.asarray(d["realisations"], dtype=float),
        )
