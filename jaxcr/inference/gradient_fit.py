"""Gradient fits: Fisher scoring (or any optax optimiser) on estimated gradients of χ².

Each step estimates dχ²/dθ with a gradient estimator (:mod:`jaxcr.inference.estimators`) and
the Fisher matrix with the Jacobian noise removed (:mod:`jaxcr.inference.fisher`). The default,
Fisher scoring, preconditions the gradient by the Gauss-Newton Fisher matrix (profiled amplitudes
marginalised) and applies it through ``optax.chain(optax.clip_by_global_norm(max_step),
optax.sgd(1))``; it converges in a few steps where Adam needs tens. Any other optax optimiser
(``GradientFit(optimizer=optax.adam(0.1))``) is applied to the raw gradient. The fast choice at
small λT; at long backtracking times use the emulator fit (:mod:`jaxcr.inference.emulator_fit`).
"""

from __future__ import annotations

import dataclasses
import time as _time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import _checks
from .estimators import CRN, GradientEstimator, estimate_gradient
from .fisher import degenerate_directions, fisher_covariance, fisher_matrix, fisher_step
from .likelihood import chi2_profiled, observed_multipoles, sky_covariance
from .results import FitResult

__all__ = ["GradientFit", "run_gradient_fit"]


@dataclasses.dataclass(frozen=True)
class GradientFit:
    """Settings of a gradient fit.

    Attributes:
        estimator: how d⟨C_ℓ⟩/dθ is estimated (default ``CRN(step=0.2)``).
        optimizer: None for Fisher scoring (default), or any ``optax.GradientTransformation``
            applied to the gradient (e.g. ``optax.adam(0.1)``).
        max_step: Fisher scoring's largest step in ln-parameters (e-folds).
        max_steps: the most optimiser steps.
        n_average: Fisher scoring: once the proposed step is below 1σ, the mean of the next
            ``n_average`` iterates is the estimate and the Fisher matrix is averaged over them
            (the model's sampling noise and the Jacobian noise average down).
        tol, patience: other optimisers stop when χ² has not improved by ``tol`` (relative) for
            ``patience`` steps and report the best point.
    """

    estimator: GradientEstimator = CRN(step=0.2)
    optimizer: optax.GradientTransformation | None = None
    max_step: float = 1.0
    max_steps: int = 30
    n_average: int = 4
    tol: float = 1e-3
    patience: int = 5

    def validate(self) -> None:
        if not isinstance(self.estimator, GradientEstimator):
            raise TypeError(
                f"estimator must be Pathwise(), CRN(step), SPSA(step, seed) or Score(step); got {self.estimator!r}"
            )
        if self.optimizer is not None and not isinstance(self.optimizer, optax.GradientTransformation):
            raise TypeError(
                f"optimizer must be None (Fisher scoring) or an optax.GradientTransformation; got {self.optimizer!r}"
            )
        _checks.check_positive("max_step", self.max_step)
        _checks.check_positive_int("max_steps", self.max_steps)
        _checks.check_positive_int("n_average", self.n_average)
        _checks.check_positive("tol", self.tol)
        _checks.check_positive_int("patience", self.patience)

    def transformation(self) -> optax.GradientTransformation:
        """The optax transformation that applies the steps."""
        if self.optimizer is None:
            return optax.chain(optax.clip_by_global_norm(self.max_step), optax.sgd(1.0))
        return self.optimizer


def run_gradient_fit(problem, phi0, names, options: GradientFit, progress: bool) -> FitResult:
    """Optimise the ln-parameters φ of ``problem`` (one (spectrum, model, θ(φ), a(φ) or None) per
    spectrum) from ``phi0`` with estimated gradients; see :class:`GradientFit`."""
    from tqdm.auto import tqdm

    options.validate()
    to_physical = jnp.exp
    fisher_scoring = options.optimizer is None
    optimizer_name = "fisher" if fisher_scoring else "optax"
    estimator, max_steps, tol, patience, n_average = (
        options.estimator,
        options.max_steps,
        options.tol,
        options.patience,
        options.n_average,
    )
    t0 = _time.perf_counter()
    phi = jnp.asarray(phi0, dtype=float)
    opt = options.transformation()
    state = opt.init(phi)
    history: list = []
    window: list = []
    best: dict | None = None
    still = 0
    converged, message = False, f"max_steps={max_steps} reached"

    def evaluate(phi):
        total, grad, var, blocks, chaos = 0.0, jnp.zeros_like(phi), jnp.zeros_like(phi), [], []
        for observed, model, theta_fn, amp_fn in problem:
            theta, dtheta = theta_fn(phi), jax.jacfwd(theta_fn)(phi)
            est = estimate_gradient(theta, model, estimator)
            amp = None if amp_fn is None else amp_fn(phi)
            chi2, g, g_se, a = est.loss_gradient(observed, amp)
            total += float(chi2)
            grad += g @ dtheta
            if amp is not None:  # the fixed amplitude depends on φ (through r_L): exact AD of that path
                grad += jax.grad(
                    lambda p, m=est, o=observed, f=amp_fn: chi2_profiled(
                        m.mean_cl, m.covariance_cl, o, m.n_realisations, f(p)
                    )[0]
                )(phi)
            var += (g_se @ jnp.abs(dtheta)) ** 2
            ell, sel = observed_multipoles(observed, model.lmax + 1)
            a = float(a)
            sky = np.asarray(sky_covariance(est.covariance_cl, ell, observed, est.n_realisations))
            m = np.asarray(est.mean_cl)[ell]
            d_per = a * np.asarray(est.per_realisation_jacobian)[:, ell] @ np.asarray(dtheta)
            d_phi = d_per.mean(0)  # ∂(a⟨C⟩)/∂φ
            if amp is not None:
                d_phi = d_phi + np.outer(m, np.asarray(jax.grad(amp_fn)(phi)))
            blocks.append(
                dict(
                    m=m,
                    D_phi=d_phi,
                    D_phi_per=d_per,
                    a=a,
                    profiled=amp is None,
                    ell=ell,
                    cov=a**2 * sky + np.diag(np.asarray(observed.sigma[sel]) ** 2),
                    scatter=a * np.sqrt(np.diag(sky)),
                )
            )
            chaos.append((est.lyapunov_exponent, est.lyapunov_stderr, est.chaos_growth))
        return dict(
            chi2=total,
            grad=grad,
            grad_se=jnp.sqrt(var),
            blocks=blocks,
            chaos=chaos,
            fisher=fisher_matrix(blocks, len(names)),
            fisher_debiased=fisher_matrix(blocks, len(names), debias=True),
            phi=phi,
        )

    def record(it, ev, newton_sigma):
        history.append(
            dict(
                step=it,
                chi2=ev["chi2"],
                **{n: float(v) for n, v in zip(names, to_physical(ev["phi"]))},
                gradient=np.asarray(ev["grad"]).tolist(),
                gradient_stderr=np.asarray(ev["grad_se"]).tolist(),
                newton_step_sigma=newton_sigma,
                averaging=bool(window),
                lyapunov=[c[0] for c in ev["chaos"]],
                lyapunov_growth=[c[2] for c in ev["chaos"]],
            )
        )

    bar = tqdm(total=max_steps, disable=not progress, desc=f"fit ({optimizer_name})", unit="step")
    for it in range(max_steps):
        ev = evaluate(phi)
        newton, newton_sigma = fisher_step(ev["fisher"], ev["grad"])
        record(it, ev, newton_sigma)
        bar.set_postfix_str(f"χ²={ev['chi2']:.4g}, step {newton_sigma:.2f}σ, λT={max(c[2] for c in ev['chaos']):.1f}")
        bar.update(1)
        if fisher_scoring:
            # Burn-in until the Newton step is below 1σ, then average n_average iterates: each
            # iterate carries fresh model sampling noise (chaos decorrelates the model at nearby θ),
            # so the mean of the window is steadier than any single point.
            if window or newton_sigma < 1.0:
                window.append(ev)
            if len(window) >= n_average:
                converged = True
                message = f"mean of {len(window)} Fisher-scoring iterates after the step fell below 1σ"
                break
        else:
            if best is None or ev["chi2"] < best["chi2"] - tol * max(best["chi2"], 1.0):
                best, still = ev, 0
            else:
                still += 1
                if still >= patience:
                    converged, message = True, f"χ² stopped improving by > {tol:g} (relative) for {patience} steps"
                    break
        direction = -newton if fisher_scoring else ev["grad"]  # optax's sgd/adam move against it
        updates, state = opt.update(jnp.asarray(direction), state, phi)
        phi = optax.apply_updates(phi, updates)
    bar.close()
    if fisher_scoring:
        if not window:  # never settled: report the last iterate, flagged as not converged
            window = [ev]
        final = evaluate(jnp.mean(jnp.stack([w["phi"] for w in window]), axis=0))
        record(len(history), final, fisher_step(final["fisher"], final["grad"])[1])
        fisher = np.mean([w["fisher_debiased"] for w in window + [final]], axis=0)
    else:
        assert best is not None  # at least one step was evaluated
        final, fisher = best, best["fisher_debiased"]
    cov, null = fisher_covariance(fisher)
    blocks = final["blocks"]
    return FitResult(
        parameters=dict(zip(names, (float(v) for v in to_physical(final["phi"])))),
        log_uncertainties=dict(zip(names, (float(np.sqrt(c)) if c >= 0 else float("inf") for c in np.diag(cov)))),
        covariance=cov,
        names=tuple(names),
        amplitudes=[b["a"] for b in blocks],
        chi2=final["chi2"],
        n_data=int(sum(len(b["m"]) for b in blocks)),
        converged=converged,
        message=message,
        degenerate=degenerate_directions(cov, null, names),
        history=history,
        estimator=type(estimator).__name__,
        wall_time_s=_time.perf_counter() - t0,
        model_spectra=[(b["ell"], b["a"] * b["m"], b["scatter"]) for b in blocks],
        optimizer=optimizer_name,
        lyapunov=final["chaos"],
        fisher=fisher,
    )
