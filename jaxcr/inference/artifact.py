"""The emulator artifact: a finished campaign condensed into the model a fit needs, with provenance.

An :class:`EmulatorArtifact` holds one analysis' emulators of ⟨C_ℓ⟩(θ) and ⟨ln C_ℓ⟩(θ) with the
single-sky scatter, the backtracking time, the fit box and where it all came from; it is one
``.npz`` file whose version is the hash of its own arrays. :mod:`jaxcr.inference.artifact_build`
makes one from a campaign; :mod:`jaxcr.inference.shipped` finds the ones shipped with jaxcr.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from .. import io
from ..analysis import Analysis
from ..pair_model import PairModelBaseline, PairModelLaw
from ..parametrisation import Parametrisation
from ..spectrum_model import SpectrumModel
from .convergence import separation_time
from .emulator import SpectrumEmulator

__all__ = ["EmulatorArtifact", "ARTIFACT_FORMAT"]

ARTIFACT_FORMAT = "jaxcr-emulator/3"  # /2 plus the local covariance of one sky (log_point_covs, …)
READABLE_FORMATS = ("jaxcr-emulator/2", ARTIFACT_FORMAT)


@dataclasses.dataclass(frozen=True)
class EmulatorArtifact:
    """An emulator of one analysis' model spectrum at one T, with its provenance.

    Attributes:
        emulator: ⟨C_ℓ⟩(θ) and S(θ) of the unit-gradient sky (a = 1), ℓ in ``ells``.
        log_emulator: ⟨ln C_ℓ⟩(θ) and Cov(ln C_ℓ, ln C_ℓ') of the same sky (the log-normal likelihood),
            pooled over the design or local to θ (``SkyScatter``; its ``point_covs``).
        ells: the emulated multipoles.
        analysis: the observatory analysis the spectra went through.
        time: the model's backtracking time (chosen by the diagnostic unless forced): ΩT, or a
            multiple of t_sep(σ², ρ) for a campaign with ``separation_times`` (:meth:`time_at`).
        parameters: the named parameters θ stands for, their boxes the design's extent (fits stay inside).
        n_realisations: N_B per design point (the smallest where points were given more: the
            provenance's ``realisations`` lists each point's).
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
    _LOCAL = ("point_covs", "point_z", "bandwidth")  # the log emulator's local covariance, where it has one

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
        for name in self._LOCAL if self.log_emulator.point_covs is not None else ():  # absent from /2 artifacts
            h.update(np.ascontiguousarray(getattr(self.log_emulator, name), dtype=float).tobytes())
        h.update(repr((self.analysis.as_dict(), self.time, self.emulator.degree)).encode())
        if self.emulator.baseline is not None:
            h.update(io.to_json(self._baseline_record()).encode())
        h.update(io.to_json(self.parameters.as_dict()).encode())
        return h.hexdigest()[:16]

    def save(self, path) -> Path:
        """Write the artifact (one ``.npz``: arrays plus a JSON record), atomically."""
        arrays = {name: getattr(self.emulator, name) for name in self._ARRAYS}
        arrays |= {f"log_{name}": getattr(self.log_emulator, name) for name in self._ARRAYS}
        arrays |= dict(ells=self.ells, noise_fraction=self.noise_fraction)
        local = self.log_emulator.point_covs is not None
        arrays |= {f"log_{name}": getattr(self.log_emulator, name) for name in (self._LOCAL if local else ())}
        meta = dict(
            format=ARTIFACT_FORMAT if local else READABLE_FORMATS[0],  # /2 readers read the pooled ones
            version=self.version,
            degree=self.emulator.degree,
            analysis=self.analysis.as_dict(),
            time=self.time,
            parameters=self.parameters.as_dict(),
            n_realisations=self.n_realisations,
            provenance=self.provenance,
            pair_model=None if self.emulator.baseline is None else self._baseline_record(),
        )
        return io.save_checkpoint(path, arrays, meta)

    def _baseline_record(self) -> dict:
        b = self.emulator.baseline
        assert b is not None
        return dict(law=b.law.as_dict(), cos2_gradient_b0=b.cos2_gradient_b0)

    @classmethod
    def load(cls, path) -> EmulatorArtifact:
        """Read an artifact written by :meth:`save`; checks its format and its version hash."""
        arrays, meta = io.load_checkpoint(path, kind="artifact")
        if meta.get("format") not in READABLE_FORMATS:
            raise ValueError(
                f"{path} is not a {' or '.join(READABLE_FORMATS)} artifact (format {meta.get('format')!r}): build it "
                "again with `jaxcr campaign artifact`"
            )
        pair = meta.get("pair_model")
        baseline = None if pair is None else PairModelBaseline(
            PairModelLaw.from_dict(pair["law"]), arrays["ells"], pair["cos2_gradient_b0"]
        )  # fmt: skip
        emulator = SpectrumEmulator(
            **{name: arrays[name] for name in cls._ARRAYS}, degree=int(meta["degree"]), baseline=baseline
        )
        log_emulator = SpectrumEmulator(
            **{name: arrays[f"log_{name}"] for name in cls._ARRAYS},
            degree=int(meta["degree"]),
            log_moments=True,
            baseline=baseline,
            point_covs=arrays.get("log_point_covs"),
            point_z=arrays.get("log_point_z"),
            bandwidth=arrays.get("log_bandwidth"),
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
        """The model's ΩT at the named ``values``: ``time``, or ``time`` × t_sep(σ², ρ) there; times
        the time scale of the nearest design point where the campaign lengthened points
        (:meth:`jaxcr.inference.campaign.Campaign.lengthen`: their spectra are taken that much later)."""
        scale = separation_time(values["sigma2"], values["rho"]) if self.separation_times else 1.0
        return self.time * float(scale) * self._time_scale_near(values)

    def _time_scales(self) -> tuple[np.ndarray, np.ndarray] | None:
        campaign = self.provenance.get("campaign", {})
        scales = campaign.get("time_scales")
        return None if scales is None else (np.asarray(campaign["design"], dtype=float), np.asarray(scales, float))

    def _time_scale_near(self, values) -> float:
        lengthened = self._time_scales()
        if lengthened is None:
            return 1.0
        design, scales = lengthened
        return float(scales[self._nearest(design, values)])

    def _nearest(self, design, values) -> int:
        """Index of the point of ``design`` (K, P) nearest the named ``values`` (box coordinates,
        each axis scaled by the design box's extent)."""
        box = self.design_box
        span = np.where(box.coordinate_high > box.coordinate_low, box.coordinate_high - box.coordinate_low, 1.0)
        theta = box.coordinates({n: values[n] for n in box.names})
        return int(np.argmin((((np.asarray(design, dtype=float) - theta) / span) ** 2).sum(1)))

    def point_scatter_near(self, values, local: bool = False) -> tuple[float, dict] | None:
        """How much more the realisations of the design point nearest ``values`` scatter than the
        covariance a likelihood uses there (the mean over ℓ of their Var(ln C_ℓ) over the
        likelihood's: the pooled one, or with ``local`` the artifact's local one), and that point's
        values; None for an artifact that does not record it (``point_scatter`` in the provenance:
        artifacts built by jaxcr 0.3.1 or later)."""
        record = self.provenance.get("point_scatter")
        key = "ratio_local" if local else "ratio"
        if record is None or key not in record:
            return None
        k = self._nearest(record["design"], values)
        point = self.design_box.values(np.asarray(record["design"][k], dtype=float))
        return float(record[key][k]), {n: float(v) for n, v in point.items()}

    def time_text(self) -> str:
        text = f"ΩT = {self.time:g} t_sep(σ², ρ)" if self.separation_times else f"ΩT = {self.time:g}"
        lengthened = self._time_scales()
        if lengthened is not None:
            scales = lengthened[1]
            longer = scales != 1.0
            factors = "/".join(f"{f:g}" for f in sorted(set(scales[longer].tolist())))
            text += f" (×{factors} at {int(longer.sum())} of {scales.size} design points, lengthened to converge)"
        return text

    def campaign_model(self) -> SpectrumModel:
        """The campaign's :class:`jaxcr.spectrum_model.SpectrumModel` (for synthetic skies made like its points)."""
        return SpectrumModel.from_dict(self.provenance["campaign"]["model"])

    def _field_level(self) -> str:
        level = self.provenance.get("campaign", {}).get("model", {}).get("field_precision")
        return f" (field {level})" if level else ""

    @property
    def design_box(self) -> Parametrisation:
        """The box the design points span: the emulator's θ-dependence there is fitted to simulations;
        outside it (within :attr:`parameters`, for an artifact with a pair-model baseline) it is the
        pair model's extrapolation."""
        d = self.provenance.get("design_box")
        return self.parameters if d is None else Parametrisation.from_dict(d)

    def summary(self) -> str:
        conv = self.provenance.get("convergence", {})
        box = ", ".join(f"{p.label} ∈ [{p.low:.3g}, {p.high:.3g}]" for p in self.parameters.parameters)
        if self.emulator.baseline is not None:
            sim = ", ".join(f"{p.label} ∈ [{p.low:.3g}, {p.high:.3g}]" for p in self.design_box.parameters)
            box += f" (pair-model baseline; simulated {sim}, beyond it extrapolated)"
        return (
            f"emulator artifact {self.version} ({self.analysis.name}): ℓ = {self.ells[0]}..{self.ells[-1]}, "
            f"{self.time_text()} ({'converged' if conv.get('converged', True) else 'NOT converged'} by the diagnostic), "
            f"{box}, {self.provenance.get('design_points', '?')} design points × {self._realisations_text()} realisations"
            f"{self._field_level()}, "
            f"degree {self.emulator.degree} (max reduced χ² {float(np.max(self.emulator.reduced_chi2)):.2f}), "
            f"pixel-noise correction ≤ {100 * float(np.max(self.noise_fraction)):.0f} % of ⟨C_ℓ⟩" + self._scatter_text()
        )

    def _realisations_text(self) -> str:
        """N_B, or its range where design points were given more (``realisations`` in the provenance)."""
        counts = self.provenance.get("realisations") or [self.n_realisations]
        low, high = min(counts), max(counts)
        return f"{low}" if low == high else f"{low}-{high}"

    def _scatter_text(self) -> str:
        record = self.provenance.get("point_scatter")
        if record is None:
            return ""
        ratio = np.asarray(record["ratio"])
        text = f", one sky's Var(ln C_ℓ) {ratio.min():.2g}-{ratio.max():.2g} × the pooled one"
        if "ratio_local" in record and self.log_emulator.bandwidth is not None:
            local = np.asarray(record["ratio_local"])
            text += (
                f" ({local.min():.2g}-{local.max():.2g} × the local one, width "
                f"{float(self.log_emulator.bandwidth):.2g}, which calibrated intervals draw their toys with)"
            )
        return text + " over the design points"
