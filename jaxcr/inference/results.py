"""The results of fits: best fit, uncertainties, intervals, diagnostics and the model spectra."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from .. import io
from .fisher import fisher_eigen

__all__ = ["FitResult", "SkyFitResult"]


@dataclasses.dataclass
class FitResult:
    """Best fit, uncertainties and diagnostics.

    ``parameters`` are the fitted physical values; ``log_uncertainties`` are 1σ errors of their
    natural logarithms (≈ relative errors) from the Fisher matrix (Gauss-Newton curvature of χ²
    with the estimated Jacobian and the full covariance Σ, the profiled amplitudes marginalised,
    the Jacobian's own noise subtracted; see :func:`_fisher`);
    ``degenerate`` lists parameter combinations the data do not constrain (then the corresponding
    values are not meaningful and are reported as such, not hidden). ``history`` has one entry per
    step (χ², parameters, gradient ± SE, Lyapunov exponent λ and λT of each spectrum's model).
    ``model_spectra`` holds, per spectrum, (ℓ, a⟨C_ℓ⟩, expected data-model scatter
    a·sqrt(diag S (1/R_sky + 1/N_B))) at the best fit, without the noise level N.
    """

    parameters: dict
    log_uncertainties: dict
    covariance: np.ndarray
    names: tuple
    amplitudes: list
    chi2: float
    n_data: int
    converged: bool
    message: str
    degenerate: list
    history: list
    estimator: str
    wall_time_s: float
    model_spectra: list  # (ell, a⟨C_ℓ⟩, expected scatter) per spectrum at the best fit
    optimizer: str = "fisher"
    lyapunov: list = dataclasses.field(default_factory=list)  # (λ, SE, λT) per spectrum at the best fit
    fisher: np.ndarray | None = None  # marginal Fisher matrix of the ln-parameters (Jacobian noise removed)
    intervals: dict | None = None  # emulator fits: {name: {"68"|"95": (low, high, closed_low, closed_high)}}
    design: list | None = None  # emulator fits: the design points evaluated per spectrum (for ``reuse``)
    ell_cut: dict = dataclasses.field(default_factory=dict)  # {spectrum index: ℓ cut by ell_max}

    def constrained_directions(self):
        """[(unit vector in ln-parameter space, 1σ along it)] for every direction the data
        constrain (positive Fisher eigenvalue): with a degeneracy, what the fit *does* measure."""
        vals, vecs, null = fisher_eigen(self.fisher)
        return [(vecs[:, i], float(1 / np.sqrt(vals[i]))) for i in np.flatnonzero(~null)]

    def summary(self) -> str:
        chaos = "; ".join(f"λT = {g:.1f}" for _, _, g in self.lyapunov)
        how = (
            "emulator, optax L-BFGS"
            if self.estimator == "emulator"
            else f"{self.optimizer}, {self.estimator} gradients"
        )
        lines = [
            f"fit ({how}{', ' + chaos if chaos else ''}): "
            f"χ² = {self.chi2:.3g} for {self.n_data} points, "
            f"{'converged' if self.converged else 'NOT converged'} ({self.message}), {self.wall_time_s:.1f} s"
        ]
        for name in self.names:
            line = f"  {name} = {self.parameters[name]:.4g} (±{100 * self.log_uncertainties[name]:.1f} %)"
            for level, (lo, hi, closed_lo, closed_hi) in (self.intervals or {}).get(name, {}).items():
                line += f", {level} % [{lo:.4g}{'' if closed_lo else ' open'}, {hi:.4g}{'' if closed_hi else ' open'}]"
            lines.append(line)
        for k, ells in self.ell_cut.items():
            lines.append(f"  spectrum {k}: ℓ = {ells} cut by ell_max (not fitted)")
        for d in self.degenerate:
            lines.append(f"  DEGENERATE: {d}")
        return "\n".join(lines)


@dataclasses.dataclass
class SkyFitResult:
    """The result of :func:`fit_sky` (all values also in :meth:`as_dict`, saved by :meth:`save`).

    ``parameters``: σ², ρ = r_L/λ_c, amplitude a, |∇n/n| r_L, gradient_per_pc (1/pc), λ_c (pc);
    ``intervals[name][level]`` = (low, high, closed_low, closed_high) for levels "68", "95";
    ``directions``: per Fisher eigen-direction of (ln σ², ln ρ) its unit vector, 1σ width (e-folds),
    prior half-range along it and the flag; ``flags``: human-readable warnings."""

    parameters: dict
    intervals: dict
    fisher: np.ndarray
    names: tuple
    chi2: float
    dof: int
    p_value: float
    m2lnl: float
    directions: list
    flags: list
    ell: np.ndarray
    data: np.ndarray
    data_sigma: np.ndarray
    model: np.ndarray
    model_band: np.ndarray  # (2, n): the one-sky band (low, high) about the model
    settings: dict
    artifact: dict
    spectrum: dict
    profiles: dict
    wall_time_s: float

    def summary(self) -> str:
        p = self.parameters
        lines = [
            f"one-sky fit ({self.spectrum['observatory']}, ℓ = {self.ell[0]}..{self.ell[-1]}, artifact "
            f"{self.artifact['version']}, ΩT = {self.artifact['time']:g}): χ² = {self.chi2:.3g} for {self.dof} "
            f"degrees of freedom (p = {self.p_value:.3g}), {self.wall_time_s:.1f} s"
        ]
        for name in ("sigma2", "rho", "gradient_per_pc", "lambda_c_pc"):
            if name not in p:
                continue
            line = f"  {name} = {p[name]:.4g}"
            for level, (lo, hi, c_lo, c_hi) in self.intervals.get(name, {}).items():
                line += f", {level} % [{lo:.4g}{'' if c_lo else ' open'}, {hi:.4g}{'' if c_hi else ' open'}]"
            lines.append(line)
        if "gradient_per_pc" not in self.intervals and "gradient_per_pc" in p:
            lines[-1 if "lambda_c_pc" not in p else -2] += " (given)"
        for d in self.directions:
            lines.append(
                f"  direction {d['combination']}: 1σ = {d['sigma']:.3g} e-folds, {d['fraction_of_prior']:.2f} of the "
                f"prior half-range{' → POORLY CONSTRAINED' if d['poorly_constrained'] else ''}"
            )
        lines += [f"  FLAG: {f}" for f in self.flags]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return json.loads(io.to_json(out))

    def save(self, folder) -> Path:
        """Write ``fit.json`` (everything, with the settings, artifact provenance, versions and
        date) and ``fit.png`` (data against the best-fit model, and the profile likelihoods)."""
        from ..plot import plot_sky_fit

        folder = Path(folder)
        text = io.to_json(self.as_dict(), indent=1)
        io.atomic_write(folder / "fit.json", lambda tmp: Path(tmp).write_text(text))
        fig = plot_sky_fit(self)
        io.atomic_write(folder / "fit.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
        import matplotlib.pyplot as plt

        plt.close(fig)
        return folder
