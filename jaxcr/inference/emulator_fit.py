"""Emulator fits: designs of independent model evaluations, a quadratic emulator, optax L-BFGS.

Per spectrum, each round evaluates a ``design_points``² design of independent model sets of N_B
realisations on a box around the current estimate (half-widths in e-folds of σ² and ρ), fits
ln⟨C_ℓ⟩ by a quadratic in (ln σ², ln ρ) to the design points inside the box (those of earlier
rounds included; :class:`jaxcr.inference.emulator.SpectrumEmulator`), minimises the emulated χ²
(Σ fixed at the best fit) with optax L-BFGS, exact gradients by AD through the emulator (chaos is
averaged out in the design, not differentiated through), and recentres, until the estimate lies
within 1σ of the box centre and inside the inner 75 % of the box. Uncertainties: the profile
likelihood of each parameter (Δχ² = 1 and 4) and the Laplace covariance (exact Hessian).
Cost: design_points² · N_B realisations per spectrum and round.
"""

from __future__ import annotations

import dataclasses
import time as _time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from .emulator import SpectrumEmulator, box_grid, lbfgs_minimise
from .fisher import degenerate_directions, fisher_covariance
from .likelihood import fixed_sigma_chi2, gls_chi2, observed_multipoles
from .model import model_lyapunov, model_moments
from .profile import level_interval
from .results import FitResult

__all__ = ["EmulatorFit", "EmulatedLikelihood", "run_emulator_fit", "EMULATOR_BOX"]

EMULATOR_BOX = (1.4, 0.9)  # half-widths (e-folds) of the design box in ln σ² and ln ρ


@dataclasses.dataclass(frozen=True)
class EmulatorFit:
    """Settings of an emulator fit (module docstring).

    Attributes:
        design_points: points per axis of each round's design (≥ 3 for a quadratic).
        box: half-widths of the design box in e-folds of σ² and ρ (default ±1.4, ±0.9, the box
            whose coverage experiments/calibrate_likelihood.py measured).
        max_rounds: the most design rounds before the fit is reported as not converged.
        reuse: a previous emulator fit of the same spectra whose design points are pooled.
        degree: the emulator's polynomial degree.
        moments: the model evaluation, ``moments(model, thetas, first_stream)`` → (means (K, L),
            covariances (K, L, L)); default :func:`jaxcr.inference.model.model_moments`. Give
            another function to fit an analytic or precomputed model.
    """

    design_points: int = 9
    box: tuple = EMULATOR_BOX
    max_rounds: int = 3
    reuse: FitResult | None = None
    degree: int = 2
    moments: Callable = model_moments

    def validate(self) -> None:
        _checks.check_positive_int("max_rounds", self.max_rounds)
        _checks.check_positive_int("design_points", self.design_points)
        if self.design_points < 3:
            raise ValueError(f"design_points must be >= 3 (a quadratic emulator per axis); got {self.design_points}")
        box = np.asarray(self.box, dtype=float)
        if box.shape != (2,):
            raise ValueError(f"box must give two half-widths (e-folds of σ² and ρ); got shape {box.shape}")
        _checks.check_positive("box", box)
        if self.degree not in (1, 2, 3):
            raise ValueError(f"degree must be 1, 2 or 3; got {self.degree!r}")
        if not callable(self.moments):
            raise TypeError(
                f"moments must be a function (model, thetas, first_stream) -> (means, covs); got {self.moments!r}"
            )


_BARRIER = 1e3  # χ² penalty per (|z| − 1)² outside the design box: the emulator does not extrapolate
_STREAM_STRIDE = 1_000_000  # design-point streams of spectrum k start at 1 + k·_STREAM_STRIDE


class EmulatedLikelihood(eqx.Module):
    """χ²(φ) of all spectra on their emulators, with the data covariances Σ*_k held fixed.

    A Module (emulators and data as array leaves, the spectra's θ(φ) and amplitude maps static),
    so the jitted minimiser and profiles below compile once per fit, not once per round."""

    emulators: list
    observed: list  # (C^obs − N, diag(σ_ℓ²)) per spectrum
    ells: tuple = eqx.field(static=True)
    sky_realisations: tuple = eqx.field(static=True)
    theta_fns: tuple = eqx.field(static=True)
    amp_fns: tuple = eqx.field(static=True)

    @classmethod
    def build(cls, problem, emulators):
        ells, observed = [], []
        for spec, model, _, _ in problem:
            ell, sel = observed_multipoles(spec, model.lmax + 1)
            ells.append(tuple(ell.tolist()))
            observed.append((jnp.asarray(spec.cl[sel]) - spec.noise_level, jnp.diag(jnp.asarray(spec.sigma[sel]) ** 2)))
        return cls(
            emulators=list(emulators),
            observed=observed,
            ells=tuple(ells),
            sky_realisations=tuple(int(spec.sky_realisations) for spec, _, _, _ in problem),
            theta_fns=tuple(p[2] for p in problem),
            amp_fns=tuple(p[3] for p in problem),
        )

    def _spectra(self):
        return zip(self.emulators, self.observed, self.sky_realisations, self.theta_fns, self.amp_fns)

    def terms(self, phi, sigmas):
        """(χ², box penalty, max |z| over the boxes, amplitudes)."""
        chi2, penalty, z_max, amps = 0.0, 0.0, 0.0, []
        for (emu, (o, _), _, theta_fn, amp_fn), sig in zip(self._spectra(), sigmas):
            theta = theta_fn(phi)
            z = jnp.abs(emu.box_coordinates(theta))
            penalty += _BARRIER * jnp.sum(jnp.maximum(z - 1.0, 0.0) ** 2)
            z_max = jnp.maximum(z_max, jnp.max(z))
            c2, a = fixed_sigma_chi2(emu.mean(theta), o, sig, None if amp_fn is None else amp_fn(phi))
            chi2, amps = chi2 + c2, amps + [a]
        return chi2, penalty, z_max, amps

    def objective(self, phi, sigmas):
        chi2, penalty, _, _ = self.terms(phi, sigmas)
        return chi2 + penalty

    def data_covariances(self, phi):
        """Σ*_k = a_k² S_k(θ_k) + diag(σ_ℓ²) at φ, the amplitude profiled with Σ(θ) if not fixed."""
        out = []
        for emu, (o, meas), r_sky, theta_fn, amp_fn in self._spectra():
            theta = theta_fn(phi)
            sky = emu.sky_covariance(theta, r_sky)
            _, a = gls_chi2(emu.mean(theta), sky, o, meas, None if amp_fn is None else amp_fn(phi))
            out.append(a**2 * sky + meas)
        return out

    def model_spectra(self, phi, sigmas):
        """(ℓ, a⟨C_ℓ⟩, a·sqrt(diag S_sky)) per spectrum at φ, and the amplitudes a."""
        _, _, _, amps = self.terms(phi, sigmas)
        out = []
        for (emu, _, r_sky, theta_fn, _), ell, a in zip(self._spectra(), self.ells, amps):
            theta = theta_fn(phi)
            sky = np.diag(np.asarray(emu.sky_covariance(theta, r_sky)))
            out.append((np.array(ell), float(a) * np.asarray(emu.mean(theta)), float(a) * np.sqrt(sky)))
        return out, [float(a) for a in amps]


@eqx.filter_jit
def _emulated_grid(like: EmulatedLikelihood, grid, sigmas):
    return jax.vmap(like.objective, in_axes=(0, None))(grid, sigmas)


@eqx.filter_jit
def _emulated_minimum(like: EmulatedLikelihood, x0, sigmas, fixed, value):
    """(φ, χ² without penalty, max |z|) at the minimum of the emulated χ² from x0, the components
    where ``fixed`` is true held at ``value`` (a profile; none fixed for the best fit): they are
    overwritten inside the objective, so their gradient vanishes and L-BFGS moves only the others.
    One compilation serves the best fit and every profile point."""
    insert = lambda p: jnp.where(fixed, value, p)
    phi = insert(lbfgs_minimise(lambda p: like.objective(insert(p), sigmas), x0))
    chi2, _, z_max, _ = like.terms(phi, sigmas)
    return phi, chi2, z_max


@eqx.filter_jit
def _emulated_covariances(like: EmulatedLikelihood, phi):
    return like.data_covariances(phi)


@eqx.filter_jit
def _emulated_hessian(like: EmulatedLikelihood, phi, sigmas):
    return jax.hessian(lambda p: like.terms(p, sigmas)[0])(phi)


def _minimise_emulated(like: EmulatedLikelihood, centre, halfwidth, n_start: int = 9, iterations: int = 3):
    """Best fit (φ̂, χ², max |z|) and Σ* there: the best of an n_start^P grid over centre ±
    halfwidth, polished by L-BFGS; Σ* refreshed at the best fit ``iterations`` times."""
    grid = box_grid(centre, halfwidth, n_start)
    sigmas = _emulated_covariances(like, jnp.asarray(centre))
    phi = jnp.asarray(grid[int(np.nanargmin(np.asarray(_emulated_grid(like, jnp.asarray(grid), sigmas))))])
    free = jnp.zeros(len(centre), dtype=bool)
    for _ in range(iterations):
        phi, chi2, z_max = _emulated_minimum(like, phi, sigmas, free, jnp.asarray(0.0))
        sigmas = _emulated_covariances(like, phi)
    phi, chi2, z_max = _emulated_minimum(like, phi, sigmas, free, jnp.asarray(0.0))
    return phi, sigmas, float(chi2), float(z_max)


def _emulated_profile(like: EmulatedLikelihood, index: int, values, phi_hat, sigmas):
    """Profile χ² with φ_index fixed at each of ``values`` (increasing): (χ², max |z|) arrays,
    each point started from its neighbour's solution, outward from the best fit."""
    fixed = jnp.arange(len(phi_hat)) == index
    chi2, z_max = np.empty(len(values)), np.empty(len(values))
    k = int(np.argmin(np.abs(np.asarray(values) - float(phi_hat[index]))))
    for order in (range(k, len(values)), range(k - 1, -1, -1)):
        start = phi_hat
        for j in order:
            start, c2, z = _emulated_minimum(like, start, sigmas, fixed, jnp.asarray(float(values[j])))
            chi2[j], z_max[j] = float(c2), float(z)
    return chi2, z_max


def _open_ends(closed_lo, closed_hi):
    return "both ends" if not (closed_lo or closed_hi) else ("low end" if not closed_lo else "high end")


def _design_pools(problem, reuse):
    """Per spectrum the design points evaluated so far: those of ``reuse`` (a previous emulator
    fit of the same spectra and models) or none."""
    if reuse is None:
        return [dict(model=model, theta=np.zeros((0, 2)), mean=None, cov=None) for _, model, _, _ in problem]
    if not reuse.design or len(reuse.design) != len(problem):
        raise ValueError("reuse must be a FitResult of an emulator fit of as many spectra")
    for k, ((_, model, _, _), pool) in enumerate(zip(problem, reuse.design)):
        if pool["model"] != model:
            raise ValueError(f"reuse: spectrum {k} was fitted with another model or mask ({pool['model']} vs {model})")
    return [dict(pool) for pool in reuse.design]


def run_emulator_fit(problem, phi0, names, box_axes, options: EmulatorFit, progress: bool) -> FitResult:
    """Fit on emulators built from designs centred on the current estimate (:class:`EmulatorFit`).
    ``box_axes[i]`` says which half-width of the box (σ² or ρ) sets the search range of φ_i."""
    from tqdm.auto import tqdm

    options.validate()
    box, design_points, max_rounds = np.asarray(options.box, dtype=float), options.design_points, options.max_rounds
    reuse, degree, moments = options.reuse, options.degree, options.moments
    t0 = _time.perf_counter()
    pools = _design_pools(problem, reuse)
    centre, halfwidth = np.asarray(phi0, dtype=float), box[list(box_axes)]
    history, converged, message = [], False, f"max_rounds={max_rounds} reached before the estimate settled"
    bar = tqdm(total=max_rounds, disable=not progress, desc="fit (emulator)", unit="round")
    for rnd in range(max_rounds):
        emulators, n_inside = [], []
        for k, ((observed, model, theta_fn, _), pool) in enumerate(zip(problem, pools)):
            c = np.asarray(theta_fn(jnp.asarray(centre)))
            design = box_grid(c, box, design_points)
            mean, cov = moments(model, design, 1 + _STREAM_STRIDE * k + len(pool["theta"]))
            pool["theta"] = np.concatenate([pool["theta"], design])
            pool["mean"] = mean if pool["mean"] is None else np.concatenate([pool["mean"], mean])
            pool["cov"] = cov if pool["cov"] is None else np.concatenate([pool["cov"], cov])
            inside = np.all(np.abs(pool["theta"] - c) <= box * (1 + 1e-9), axis=1)
            n_inside.append(int(inside.sum()))
            ell, _ = observed_multipoles(observed, model.lmax + 1)
            emulators.append(
                SpectrumEmulator.fit(
                    pool["theta"][inside],
                    pool["mean"][inside][:, ell],
                    pool["cov"][inside][:, ell][:, :, ell],
                    model.n_realisations,
                    degree,
                    c,
                    box,
                )
            )
        like = EmulatedLikelihood.build(problem, emulators)
        phi, sigmas, chi2, z_max = _minimise_emulated(like, centre, halfwidth)
        if not (np.isfinite(chi2) and np.all(np.isfinite(np.asarray(phi)))):
            raise FloatingPointError(
                f"the emulated χ² is not finite at its minimum in round {rnd} (χ² = {chi2}): "
                "check the spectra (σ_ℓ > 0, finite C_ℓ, C_ℓ above the noise level)"
            )
        fisher = 0.5 * np.asarray(_emulated_hessian(like, phi, sigmas))
        cov, null = fisher_covariance(fisher)
        sigma = np.sqrt(np.where(np.isfinite(np.diag(cov)) & (np.diag(cov) >= 0), np.diag(cov), np.inf))
        shift = np.asarray(phi) - centre
        history.append(
            dict(
                round=rnd,
                centre=dict(zip(names, np.exp(centre).tolist())),
                estimate=dict(zip(names, np.exp(np.asarray(phi)).tolist())),
                chi2=float(chi2),
                shift_sigma=(np.abs(shift) / sigma).tolist(),
                box_z_max=float(z_max),
                design_points=n_inside,
                emulator_max_reduced_chi2=[float(max(e.reduced_chi2)) for e in emulators],
                wall_time_s=_time.perf_counter() - t0,
            )
        )
        bar.set_postfix_str(f"χ²={float(chi2):.4g}, shift {np.max(np.abs(shift) / sigma):.2f}σ, |z|={float(z_max):.2f}")
        bar.update(1)
        centre = np.asarray(phi)
        if float(z_max) <= 0.75 and np.all(np.abs(shift) <= sigma):
            converged = True
            message = (
                f"estimate within 1σ of the design centre and inside the inner 75 % of the design box "
                f"after {rnd + 1} rounds"
            )
            break
    bar.close()
    phi_hat = jnp.asarray(centre)
    intervals, log_unc, degenerate = {}, {}, degenerate_directions(cov, null, names)
    for i, name in enumerate(names):
        reach = min(max(4.0 * sigma[i], 0.2), 2.0 * halfwidth[i]) if np.isfinite(sigma[i]) else 2.0 * halfwidth[i]
        x = float(phi_hat[i]) + reach * np.linspace(-1.0, 1.0, 41)
        prof, z = _emulated_profile(like, i, x, phi_hat, sigmas)
        edge = z > 1.0 - 1e-3
        intervals[name] = {
            f"{lvl}": level_interval(x, prof - float(chi2), level, stop=edge)
            for lvl, level in (("68", 1.0), ("95", 4.0))
        }
        lo, hi, closed_lo, closed_hi = intervals[name]["68"]
        log_unc[name] = 0.5 * float(np.log(hi / lo)) if closed_lo and closed_hi else float("inf")
        if not (closed_lo and closed_hi):
            degenerate.append(
                f"{name}: the 68 % profile-likelihood interval [{lo:.3g}, {hi:.3g}] does not close "
                f"inside the emulator's design box ({_open_ends(closed_lo, closed_hi)} open)"
            )
    spectra, amps = like.model_spectra(phi_hat, sigmas)
    lyap = []
    for _, model, theta_fn, _ in problem:
        lam, lam_se = model_lyapunov(theta_fn(phi_hat), model)
        lyap.append((lam, lam_se, lam * model.time))
    return FitResult(
        parameters=dict(zip(names, np.exp(np.asarray(phi_hat)).tolist())),
        log_uncertainties=log_unc,
        covariance=cov,
        names=tuple(names),
        amplitudes=amps,
        chi2=float(chi2),
        n_data=int(sum(len(ell) for ell, _, _ in spectra)),
        converged=converged,
        message=message,
        degenerate=degenerate,
        history=history,
        estimator="emulator",
        wall_time_s=_time.perf_counter() - t0,
        model_spectra=spectra,
        optimizer="lbfgs",
        lyapunov=lyap,
        fisher=fisher,
        intervals=intervals,
        design=pools,
    )
