"""Profile likelihoods: χ²(σ², ρ) on a grid, Δχ² intervals, and a smooth emulated surface.

:func:`profile_likelihood` evaluates χ² of one spectrum on a (σ², ρ) grid, no gradients
involved; :meth:`LikelihoodScan.emulated` pools the grid's realisations into a smooth emulator
(each point's own sampling noise makes the direct surface jagged at long T). Their Δχ² intervals
are the check on the Fisher errors; experiments/calibrate_likelihood.py measures how often they
cover the truth over many synthetic skies.
"""

from __future__ import annotations

import dataclasses
import enum
import time as _time

import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..field import as_option
from ..observations import ObservedSpectrum
from .emulator import SpectrumEmulator
from .likelihood import chi2_profiled, fixed_sigma_chi2, gls_chi2, observed_multipoles
from .model import SpectrumModel, model_moments, spectra_at, spectrum_covariance

__all__ = ["CovarianceMode", "LikelihoodScan", "profile_likelihood", "parabolic_minimum", "level_interval"]


class CovarianceMode(enum.StrEnum):
    """The data covariance of an emulated χ² surface: FIXED at the best fit (absolute units, the
    default) or VARYING as Σ(θ) at every point (biases σ² upwards with a known amplitude)."""

    FIXED = "fixed"
    VARYING = "varying"


@dataclasses.dataclass
class LikelihoodScan:
    """χ²(σ², ρ) on a grid and the profile likelihood of each parameter (:func:`profile_likelihood`).

    ``chi2[i, j]`` is χ² at (sigma2[i], rho[j]) with the amplitude profiled (or fixed).
    ``profile(name)`` gives (values, χ²_min over the other parameter); ``interval(name, level)``
    the region where that profile lies within ``level`` of its minimum (Δχ² = 1: 68.3 %,
    4: 95.4 % for one parameter, Wilks). An end that does not close inside the grid is returned
    as the grid edge and flagged open: the data do not bound the parameter there.

    A direct scan (``kind="direct"``) also keeps the model's mean spectrum and covariance at every
    grid point (``mean_cl``, ``cov_cl``, all ℓ ≤ lmax), from which :meth:`emulated` builds the
    smooth surface; ``emulator`` holds the emulator's diagnostics in an emulated scan.
    """

    sigma2: np.ndarray
    rho: np.ndarray
    chi2: np.ndarray
    amplitudes: np.ndarray
    n_data: int
    n_realisations: int
    wall_time_s: float
    kind: str = "direct"
    mean_cl: np.ndarray | None = None  # (S, P, L) model mean spectra on the grid
    cov_cl: np.ndarray | None = None  # (S, P, L, L) per-realisation covariances
    observed: ObservedSpectrum | None = None
    amplitude: float | None = None
    emulator: dict | None = None

    def _axes(self, name):
        if name == "sigma2":
            return np.log(self.sigma2), self.chi2
        if name == "rho":
            return np.log(self.rho), self.chi2.T
        raise ValueError(f"name must be 'sigma2' or 'rho'; got {name!r}")

    def profile(self, name: str):
        """(parameter values, profile χ²): χ² minimised over the other parameter at each value
        (a parabola through the three grid points around the discrete minimum refines it)."""
        x, table = self._axes(name)
        other = np.log(self.rho) if name == "sigma2" else np.log(self.sigma2)
        return np.exp(x), np.array([parabolic_minimum(other, row)[1] for row in table])

    def best(self) -> dict:
        """Grid point of smallest χ², refined by a parabola along each axis."""
        i, j = np.unravel_index(np.argmin(self.chi2), self.chi2.shape)
        ls, _ = parabolic_minimum(np.log(self.sigma2), self.chi2[:, j])
        lr, _ = parabolic_minimum(np.log(self.rho), self.chi2[i, :])
        return dict(sigma2=float(np.exp(ls)), rho=float(np.exp(lr)), chi2=float(self.chi2[i, j]))

    def interval(self, name: str, level: float = 1.0):
        """(low, high, closed_low, closed_high): where the profile χ² ≤ its minimum + level."""
        values, prof = self.profile(name)
        x = np.log(values)
        return level_interval(x, prof - prof.min(), level)

    def with_observed(self, observed: ObservedSpectrum, amplitude: float | None = None) -> "LikelihoodScan":
        """The same model grid against another spectrum (no new backtracking): χ² recomputed
        from the stored model means and covariances. For calibration runs over many synthetic skies.
        The spectrum must have the same mask and ℓ ≤ L removal as the scanned one."""
        if self.mean_cl is None or self.observed is None:
            raise ValueError("with_observed() needs a direct scan from profile_likelihood (with its model spectra)")
        for key in ("dec_min_deg", "dec_max_deg", "remove_ell_max", "estimator", "background"):
            if getattr(observed, key) != getattr(self.observed, key):
                raise ValueError(
                    f"{key} differs from the scanned spectrum's ({getattr(observed, key)} vs "
                    f"{getattr(self.observed, key)}): the model spectra were made for that mask"
                )
        if amplitude is not None:
            _checks.check_positive("amplitude", amplitude)
        amp = None if amplitude is None else jnp.asarray(amplitude)
        assert self.cov_cl is not None
        flat_m = jnp.asarray(self.mean_cl.reshape(-1, self.mean_cl.shape[-1]))
        flat_c = jnp.asarray(self.cov_cl.reshape(-1, *self.cov_cl.shape[-2:]))
        c2, a = jax.vmap(lambda mm, cc: chi2_profiled(mm, cc, observed, self.n_realisations, amp))(flat_m, flat_c)
        bad = ~np.isfinite(np.asarray(c2))
        if bad.any():
            i, j = np.unravel_index(int(np.argmax(bad)), self.chi2.shape)
            raise FloatingPointError(
                f"χ² is not finite at σ² = {self.sigma2[i]:g}, ρ = {self.rho[j]:g}: check the "
                "spectrum (σ_ℓ > 0, finite C_ℓ) and the model settings"
            )
        ell, _ = observed_multipoles(observed, self.mean_cl.shape[-1])
        return dataclasses.replace(
            self,
            chi2=np.asarray(c2).reshape(self.chi2.shape),
            amplitudes=np.asarray(a).reshape(self.chi2.shape),
            observed=observed,
            amplitude=amplitude,
            n_data=len(ell),
        )

    def emulated(
        self, points: int = 81, degree: int = 2, covariance: CovarianceMode | str = CovarianceMode.FIXED
    ) -> "LikelihoodScan":
        """The χ² surface of a smooth emulator of the model, on a ``points`` × ``points`` grid.

        At long backtracking times the model at neighbouring grid points is decorrelated by
        chaos, so each point carries its own sampling noise (the direct χ² surface jumps by
        ~10-40 between neighbours at 32 realisations) and a profile read off it is noise. The
        emulator pools all grid points: per multipole, ln⟨C_ℓ⟩ is fitted by a polynomial of
        ``degree`` in (ln σ², ln ρ) (least squares; standard errors from the pooled relative
        variance), and the cosmic variance is modelled as S(θ) = ⟨C⟩⟨C⟩ᵀ ∘ R̄ with R̄ the
        relative covariance S/(⟨C⟩⟨C⟩ᵀ) averaged over the grid (assumes the relative scatter
        varies little across it). Then Σ = a² [S/R_sky + V_emu] + diag(σ_ℓ²), V_emu the
        emulator's own error (propagated from the fit, correlated across ℓ like the
        realisations, scaled up by the fit's reduced χ² where that exceeds 1).

        ``covariance=CovarianceMode.FIXED`` (default) evaluates the whole surface with the data covariance Σ*
        (absolute units) of the best fit, found iteratively; VARYING uses Σ(θ) at every point.
        With Σ ∝ ⟨C(θ)⟩², χ² alone is smaller wherever the model is larger, which with a known
        amplitude biases σ² upwards: over 20 synthetic skies (experiments/calibrate_likelihood.py,
        32 realisations per grid point) the 68 % interval of σ² covered the truth in 35 % of them
        with Σ(θ), 45 % with Σ* (58 % over 40 skies at 64 realisations per point).

        ``emulator`` of the result records, per ℓ, the reduced χ² of the polynomial fit: values
        ≫ 1 mean the polynomial cannot follow the model and the emulated intervals are not to be
        trusted (raise ``degree`` or narrow the grid).
        """
        if self.mean_cl is None or self.observed is None:
            raise ValueError("emulated() needs a direct scan from profile_likelihood (with its model spectra)")
        _checks.check_positive_int("points", points)
        if degree not in (1, 2, 3):
            raise ValueError(f"degree must be 1, 2 or 3; got {degree!r}")
        mode: CovarianceMode = as_option(CovarianceMode, "covariance", covariance)
        obs = self.observed
        ell, sel = observed_multipoles(obs, self.mean_cl.shape[-1])
        x, y = np.log(self.sigma2), np.log(self.rho)
        X, Y = np.meshgrid(x, y, indexing="ij")
        assert self.cov_cl is not None
        emu = SpectrumEmulator.fit(
            np.stack([X.ravel(), Y.ravel()], -1),
            self.mean_cl.reshape(-1, self.mean_cl.shape[-1])[:, ell],
            self.cov_cl.reshape(-1, *self.cov_cl.shape[-2:])[:, ell][:, :, ell],
            self.n_realisations,
            degree,
            centre=(x.mean(), y.mean()),
            scale=(np.ptp(x) / 2, np.ptp(y) / 2),
        )
        xs = np.linspace(x[0], x[-1], points)
        ys = np.linspace(y[0], y[-1], points)
        Xs, Ys = np.meshgrid(xs, ys, indexing="ij")
        thetas = jnp.asarray(np.stack([Xs.ravel(), Ys.ravel()], -1))
        mean = np.asarray(jax.vmap(emu.mean)(thetas))  # (points², L')
        sky = np.asarray(jax.vmap(lambda t: emu.sky_covariance(t, obs.sky_realisations))(thetas))
        o = jnp.asarray(obs.cl[sel]) - obs.noise_level
        meas = jnp.diag(jnp.asarray(obs.sigma[sel]) ** 2)
        amp = None if self.amplitude is None else jnp.asarray(self.amplitude)
        c2, a = jax.vmap(lambda mm, ss: gls_chi2(mm, ss, o, meas, amp))(jnp.asarray(mean), jnp.asarray(sky))
        if mode == CovarianceMode.FIXED:
            # The data covariance Σ* = a*² S(θ*) + diag(σ²) in absolute units, at the best fit θ*,
            # for every point (with the amplitude profiled, a relative S would scale with 1/⟨C⟩²
            # through a and favour small models); iterated: best point → Σ* → surface → best point.
            fixed = jax.vmap(lambda mm, sig: fixed_sigma_chi2(mm, o, sig, amp), in_axes=(0, None))
            for _ in range(3):
                best = int(np.argmin(np.asarray(c2)))
                a_best = float(amp) if amp is not None else float(np.asarray(a)[best])
                c2, a = fixed(jnp.asarray(mean), jnp.asarray(a_best**2 * sky[best]) + meas)
        c2 = np.asarray(c2).reshape(points, points)
        if not np.all(np.isfinite(c2)):
            raise FloatingPointError("the emulated χ² surface is not finite: check the scan and the spectrum")
        return dataclasses.replace(
            self,
            sigma2=np.exp(xs),
            rho=np.exp(ys),
            chi2=c2,
            amplitudes=np.asarray(a).reshape(points, points),
            kind=f"emulated, degree {degree}, {mode.value} Σ",
            mean_cl=None,
            cov_cl=None,
            emulator=dict(
                degree=degree,
                covariance=mode.value,
                ell=ell.tolist(),
                reduced_chi2=emu.reduced_chi2.tolist(),
                max_reduced_chi2=float(max(emu.reduced_chi2)),
                grid_points=int(X.size),
                mean_cl=mean.reshape(points, points, -1),
            ),
        )

    def summary(self) -> str:
        b = self.best()
        lines = [
            f"profile likelihood ({self.kind}) on a {len(self.sigma2)}×{len(self.rho)} grid "
            f"({self.n_realisations} model realisations, {self.n_data} points, {self.wall_time_s:.0f} s): χ²_min = {b['chi2']:.3g} "
            f"at σ² = {b['sigma2']:.3g}, ρ = {b['rho']:.3g}"
        ]
        for name in ("sigma2", "rho"):
            lo, hi, clo, chi = self.interval(name)
            lines.append(
                f"  {name}: 68 % interval [{lo:.3g}{'' if clo else ' (open: grid edge)'}, "
                f"{hi:.3g}{'' if chi else ' (open: grid edge)'}]"
            )
        return "\n".join(lines)


def parabolic_minimum(x, y):
    """(x*, y*) of the parabola through the discrete minimum of y(x) and its two neighbours
    (the grid point itself at an edge or where the three points are not convex)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    k = int(np.argmin(y))
    if k == 0 or k == len(y) - 1:
        return float(x[k]), float(y[k])
    c = np.polyfit(x[k - 1 : k + 2], y[k - 1 : k + 2], 2)
    if c[0] <= 0:
        return float(x[k]), float(y[k])
    xv = -c[1] / (2 * c[0])
    return float(xv), float(min(np.polyval(c, xv), y[k]))


def level_interval(x, dy, level, stop=None):
    """Where dy(x) ≤ level around its minimum, by linear interpolation of the crossings, in exp(x).

    ``stop`` (one bool per point) marks points where the profile is not to be trusted (beyond
    the emulator's design box): an end that reaches one before crossing is returned open, at the
    last trusted point."""
    stop = np.zeros(len(x), dtype=bool) if stop is None else np.asarray(stop)
    k = int(np.argmin(np.where(stop, np.inf, dy))) if not stop.all() else int(np.argmin(dy))  # a trusted minimum
    ends = []
    for step, last in ((-1, 0), (1, len(x) - 1)):
        end, closed = x[last], False
        for i in range(k, last, step):
            if stop[i + step]:
                end = x[i]
                break
            if dy[i + step] > level:
                end, closed = x[i] + (x[i + step] - x[i]) * (level - dy[i]) / (dy[i + step] - dy[i]), True
                break
        ends.append((end, closed))
    (lo, closed_lo), (hi, closed_hi) = ends
    return float(np.exp(lo)), float(np.exp(hi)), closed_lo, closed_hi


def profile_likelihood(
    observed: ObservedSpectrum,
    model: SpectrumModel,
    sigma2,
    rho,
    *,
    amplitude: float | None = None,
    common_random_numbers: bool = False,
    progress: bool = True,
) -> LikelihoodScan:
    """χ²(σ², ρ) of one spectrum on the grid ``sigma2`` × ``rho`` (increasing positive values).

    Each grid point backtracks N_B realisations and evaluates :func:`chi2_profiled` with their
    mean and covariance, the amplitude profiled unless given. No gradient is involved, so neither
    chaos nor Jacobian noise enters: the profile-likelihood intervals
    (:meth:`LikelihoodScan.interval`) are the check on the Fisher errors of :func:`fit_spectrum`,
    which rest on an estimated curvature. At long times the direct surface is jagged (each point
    has its own sampling noise); :meth:`LikelihoodScan.emulated` pools the grid into a smooth one.

    By default every grid point draws its own realisations (keys folded from the model seed and
    the point's index), so the model noise is independent from point to point and the emulator
    averages it away. With ``common_random_numbers=True`` every point uses the model's own keys
    (those of :func:`realisation_spectra`); do not emulate such a scan: its noise is correlated
    across the grid (a realisation that wanders far raises the whole surface), the emulator takes
    that offset for signal, and its intervals do not cover (measured: σ² with a known amplitude
    covered in 3 of 20 synthetic skies at 68 %). Cost: len(sigma2)·len(rho) model evaluations
    (≈ 1 s each for the quick fit model, 32 realisations, on 2 CPU cores).
    """
    model.validate()
    grids = []
    for name, g in (("sigma2", sigma2), ("rho", rho)):
        g = np.asarray(g, dtype=float)
        if g.ndim != 1 or len(g) < 3:
            raise ValueError(f"{name} grid must be 1-D with at least 3 values; got shape {g.shape}")
        _checks.check_positive(f"{name} grid", g)
        if np.any(np.diff(g) <= 0):
            raise ValueError(f"{name} grid must be strictly increasing")
        grids.append(g)
    if amplitude is not None:
        _checks.check_positive("amplitude", amplitude)
    from tqdm.auto import tqdm

    # the default Boris step (if unset) at the geometric centre of the grid, for every point
    m = model.with_observatory(observed).resolved(
        np.log([np.sqrt(grids[0][0] * grids[0][-1]), np.sqrt(grids[1][0] * grids[1][-1])])
    )
    t0 = _time.perf_counter()
    shape = (len(grids[0]), len(grids[1]))
    means = np.empty((*shape, m.lmax + 1))
    covs = np.empty((*shape, m.lmax + 1, m.lmax + 1))
    bar = tqdm(total=means[..., 0].size, disable=not progress, desc="likelihood scan", unit="point")
    for i, s2 in enumerate(grids[0]):
        for j, r in enumerate(grids[1]):
            theta = np.log([[s2, r]])
            if common_random_numbers:
                spectra = spectra_at(jnp.broadcast_to(jnp.asarray(theta[0]), (m.n_realisations, 2)), m)
                means[i, j], covs[i, j] = spectra.mean(0), spectrum_covariance(spectra)
            else:
                (means[i, j],), (covs[i, j],) = model_moments(m, theta, 1 + i * len(grids[1]) + j)
            bar.update(1)
    bar.close()
    scan = LikelihoodScan(
        sigma2=grids[0],
        rho=grids[1],
        chi2=np.zeros(shape),
        amplitudes=np.zeros(shape),
        n_data=0,
        n_realisations=m.n_realisations,
        wall_time_s=_time.perf_counter() - t0,
        mean_cl=means,
        cov_cl=covs,
        observed=observed,
    )
    return scan.with_observed(observed, amplitude)
