"""The result of every fit: estimates, intervals, diagnostics and the model spectra, keyed by name."""

from __future__ import annotations

import dataclasses
import json
import time as _time
from pathlib import Path

import numpy as np

from .. import io
from .._version import __version__
from .campaign import software_versions

__all__ = ["FitResult", "run_record"]


def run_record() -> dict:
    """The versions and the date every saved fit records."""
    return dict(jaxcr=__version__, versions=software_versions(), date=_time.strftime("%Y-%m-%dT%H:%M:%S%z"))


@dataclasses.dataclass
class FitResult:
    """The result of a fit (all values also in :meth:`as_dict`, saved by :meth:`save`).

    Attributes:
        names: the fitted parameters, in the order of the Fisher matrix.
        parameters: best-fit physical values by name, the fitted ones and those derived from them
            (for one-sky fits: the amplitude a, |∇n/n| r_L, gradient_per_pc in 1/pc, λ_c in pc, r_L in pc).
        intervals: ``intervals[name][level]`` = (low, high, closed_low, closed_high) for levels "68"
            and "95" (profile likelihood; an end the box cuts is open).
        fisher: ½∂²(−2 ln L) at the best fit, in the parameters' coordinates.
        chi2, dof, p_value, m2lnl: the goodness of fit and −2 ln L at the best fit.
        directions: per Fisher eigen-direction of the boxed parameters its unit vector, 1σ width,
            prior half-range along it and the flag.
        flags: human-readable warnings (poorly constrained directions, intervals open at the box).
        spectra: per fitted spectrum: ℓ, the data Ĉ_ℓ − N and σ_ℓ, the best-fit model and its
            one-sky band, the spectrum's metadata and the artifact's provenance.
        settings: the fit's settings, the versions and the date.
        profiles: per parameter, the profile's coordinates, values and Δ(−2 ln L).
        wall_time_s: the fit's wall time.
        joint_region: for one-sky fits on an artifact of two parameters, their joint 68 % and 95 %
            regions (:func:`jaxcr.inference.joint_region.joint_region`); None otherwise.
    """

    names: tuple
    parameters: dict
    intervals: dict
    fisher: np.ndarray
    chi2: float
    dof: int
    p_value: float
    m2lnl: float
    directions: list
    flags: list
    spectra: list
    settings: dict
    profiles: dict
    wall_time_s: float
    joint_region: dict | None = None

    @classmethod
    def from_fit(
        cls, fit, *, names, parameters, intervals, flags, spectra, settings, wall_time_s, joint_region=None
    ) -> FitResult:
        """The result of a :class:`jaxcr.inference.fit.LikelihoodFit` with what the fit adds to it."""
        return cls(
            names=tuple(names),
            parameters=parameters,
            intervals=intervals,
            fisher=fit.fisher,
            chi2=fit.chi2,
            dof=fit.dof,
            p_value=fit.p_value,
            m2lnl=fit.m2lnl,
            directions=fit.directions,
            flags=flags,
            spectra=spectra,
            settings=settings,
            profiles=fit.profiles,
            wall_time_s=wall_time_s,
            joint_region=joint_region,
        )

    def summary(self) -> str:
        p = self.parameters
        heads = [
            f"{s['spectrum']['observatory']} (ℓ = {s['ell'][0]}..{s['ell'][-1]}, artifact {s['artifact']['version']}, "
            f"ΩT = {s['artifact']['time']:g}{' t_sep(σ², ρ)' if s['artifact'].get('time_in_separation_times') else ''})"
            for s in self.spectra
        ]
        lines = [
            f"fit of {'; '.join(heads)}: χ² = {self.chi2:.3g} for {self.dof} degrees of freedom "
            f"(p = {self.p_value:.3g}), {self.wall_time_s:.1f} s"
        ]
        dof = self.settings.get("tail_dof")
        if self.settings.get("tails") == "student-t":  # one ν, or a joint fit's per spectrum
            lines.append(
                "  likelihood: multivariate Student-t in ln C_ℓ, ν = "
                + ", ".join(f"{v:g}" for v in (dof if isinstance(dof, list) else [dof]))
                + " (the p-value from the t's law of χ²)"
            )
        shown = [n for n in self.names if n != "amplitude"] + [
            n for n in ("gradient_per_pc", "lambda_c_pc") if n in p and n not in self.names
        ]
        for name in shown:
            line = f"  {name} = {p[name]:.4g}"
            for level, (lo, hi, c_lo, c_hi) in self.intervals.get(name, {}).items():
                line += f", {level} % [{lo:.4g}{'' if c_lo else ' open'}, {hi:.4g}{'' if c_hi else ' open'}]"
            if name == "gradient_per_pc" and name not in self.intervals:
                line += " (given)"
            lines.append(line)
        for d in self.directions:
            lines.append(
                f"  direction {d['combination']}: 1σ = {d['sigma']:.3g}, {d['fraction_of_prior']:.2f} of the "
                f"prior half-range{' → POORLY CONSTRAINED' if d['poorly_constrained'] else ''}"
            )
        if self.settings.get("intervals") == "calibrated":
            c = self.settings["calibration"]
            lines.append(
                f"  intervals calibrated by {c['toys']} toy spectra at each of {c['points']} values per parameter "
                f"(Feldman-Cousins; seed {c['seed']})"
                + (
                    ", drawn with the artifact's local covariance of ln C_ℓ"
                    if self.settings.get("toys") == "local"
                    else ""
                )
            )
        lines += _region_lines(self.joint_region)
        lines += [f"  FLAG: {f}" for f in self.flags]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return json.loads(io.to_json(out))

    def save(self, folder) -> Path:
        """Write ``fit.json`` (everything, with the settings, artifact provenance, versions and
        date) and ``fit.png`` (data against the best-fit model, and the profile likelihoods)."""
        from ..plot import plot_fit

        folder = Path(folder)
        io.write_json(folder / "fit.json", self.as_dict())
        fig = plot_fit(self)
        io.atomic_write(folder / "fit.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
        import matplotlib.pyplot as plt

        plt.close(fig)
        return folder


def _region_lines(region: dict | None) -> list[str]:
    """The summary's lines on the joint region of the two boxed parameters."""
    if region is None:
        return []
    if region["thresholds"] == "calibrated":
        c = region["calibration"]
        sources = ", ".join(f"{d['folder']} (seed {d['seed']})" for d in c["campaigns"])
        share = region["calibrated_share"]
        how = f"λ ≤ c(θ) calibrated on the realisations of {sources} at {c['points']} design points" + (
            f", over {share:.0%} of the box, χ²₂ elsewhere" if share < 1 else ""
        )
    else:
        how = "Δ(−2 ln L) ≤ χ²₂'s 2.30 and 6.18"
    lines = [f"  joint region of ({', '.join(region['labels'])}), {how}:"]
    for level, r in region["levels"].items():
        ends = []
        for name, e in r["extent"].items():
            if e is None:
                ends.append(f"{name} between grid nodes")
                continue
            lo, hi, c_lo, c_hi = e
            ends.append(f"{name} [{lo:.4g}{'' if c_lo else ' open'}, {hi:.4g}{'' if c_hi else ' open'}]")
        lines.append(f"    {level} %: {', '.join(ends)}; {r['box_share']:.0%} of the box")
    return lines
