"""The result of every fit: estimates, intervals, diagnostics and the model spectra, keyed by name."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from .. import io

__all__ = ["FitResult"]


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

    @classmethod
    def from_fit(cls, fit, *, names, parameters, intervals, flags, spectra, settings, wall_time_s) -> FitResult:
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
