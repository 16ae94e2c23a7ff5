"""The one fit driver: from a likelihood and its named parameters to estimates, intervals and flags.

Every fit in jaxcr runs :func:`maximise_likelihood` on an
:class:`~jaxcr.inference.likelihood.AbstractLikelihood`:

1. the start: the candidate with the lowest objective (a grid over the box, or the user's start);
2. the best fit: an optax optimiser (L-BFGS with a zoom line search by default) from there;
3. the profile likelihood of every parameter (the others minimised, outward from the best fit):
   across the box for a boxed parameter, ±4σ (Fisher) around the best fit for one without a box;
   a profile point below the best fit replaces it (re-polished with every parameter free);
4. the Fisher matrix ½∂²(−2 ln L) at the best fit;
5. 68 % and 95 % intervals where the profile crosses Δ(−2 ln L) = 1 and 4, open where the box
   cuts them first; or, with ``FitOptions(calibration=NeymanCalibration())``, where it crosses
   critical values calibrated by toys (:mod:`jaxcr.inference.neyman`: right also at the box);
6. flags: each Fisher eigen-direction of the boxed parameters whose 1σ exceeds ``POORLY_CONSTRAINED``
   of the prior half-range along it (what the data do not narrow, whatever the intervals say),
   and every 68 % interval that reaches the box.

The compiled pieces (grid values, one minimisation with some coordinates held fixed, the Hessian)
take the likelihood as an argument, so one compilation serves the best fit and every profile point.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import _checks
from ..parametrisation import Parametrisation, Transform
from . import tails
from .likelihood import AbstractLikelihood
from .neyman import NeymanCalibration, calibrated_interval, critical_values
from .optimise import minimise

__all__ = [
    "FitOptions",
    "LikelihoodFit",
    "maximise_likelihood",
    "best_fit",
    "held_minimum",
    "minimise",
    "level_interval",
    "POORLY_CONSTRAINED",
]

POORLY_CONSTRAINED = 0.5  # flag a direction whose 1σ exceeds this fraction of the prior half-range along it
LEVELS = (("68", 1.0), ("95", 4.0))  # Δ(−2 ln L) of the 68 % and 95 % profile intervals (one parameter)


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """How :func:`maximise_likelihood` runs.

    Attributes:
        start_points: points per boxed parameter of the start grid (used when no start is given).
        profile_points: points per profile likelihood.
        optimiser: an optax optimiser (default: ``optax.lbfgs()``, with its zoom line search).
        max_steps, tolerance: the optimiser stops at ``max_steps`` or when |∇| < ``tolerance``.
        poorly_constrained: the flag's threshold (fraction of the prior half-range).
        calibration: None (intervals at Δ(−2 ln L) = 1 and 4) or a
            :class:`~jaxcr.inference.neyman.NeymanCalibration` (critical values from toys; about
            ``4 · points · toys`` toy minimisations per parameter).
    """

    start_points: int = 9
    profile_points: int = 41
    optimiser: optax.GradientTransformation | None = None
    max_steps: int = 300
    tolerance: float = 1e-8
    poorly_constrained: float = POORLY_CONSTRAINED
    calibration: NeymanCalibration | None = None

    def __post_init__(self):
        if _checks.check_positive_int("start_points", self.start_points) < 2:
            raise ValueError(f"start_points must be >= 2; got {self.start_points}")
        if _checks.check_positive_int("profile_points", self.profile_points) < 3:
            raise ValueError(f"profile_points must be >= 3; got {self.profile_points}")
        _checks.check_positive_int("max_steps", self.max_steps)
        _checks.check_positive("tolerance", self.tolerance)
        _checks.check_positive("poorly_constrained", self.poorly_constrained)
        if self.optimiser is not None and not isinstance(self.optimiser, optax.GradientTransformation):
            raise TypeError(f"optimiser must be an optax optimiser; got {type(self.optimiser).__name__}")
        if self.calibration is not None and not isinstance(self.calibration, NeymanCalibration):
            raise TypeError(f"calibration must be None or a NeymanCalibration; got {type(self.calibration).__name__}")

    def record(self) -> dict:
        """What a saved fit records of these options: the profile's points and how the intervals
        were found (``intervals``: "profile" at Δ(−2 ln L) = 1 and 4, or "calibrated" by toys with
        ``calibration`` = toys, points, seed)."""
        calibration = None if self.calibration is None else dataclasses.asdict(self.calibration)
        return dict(
            profile_points=self.profile_points,
            intervals="profile" if calibration is None else "calibrated",
            calibration=calibration,
        )

    @property
    def stages(self) -> int:
        """Progress stages per parameter (its profile, and its calibration if any)."""
        return 1 if self.calibration is None else 2


@dataclasses.dataclass(frozen=True)
class LikelihoodFit:
    """What :func:`maximise_likelihood` found, keyed by parameter name.

    ``phi``: the best-fit coordinates; ``values``: the best-fit physical values;
    ``intervals[name][level]`` = (low, high, closed_low, closed_high) in physical values for
    levels "68" and "95"; ``profiles[name]`` = {"coordinate", "value", "transform", "label",
    "delta_m2lnl"} and, for calibrated intervals, the critical values ("critical_68", "critical_95"
    on the axis; "calibration": where and how they were computed); ``fisher``: in the
    coordinates; ``directions``: per eigen-direction of the boxed parameters, its unit vector,
    1σ, prior half-range along it and the flag; ``flags``: human-readable warnings."""

    phi: np.ndarray
    values: dict
    m2lnl: float
    chi2: float
    dof: int
    p_value: float
    fisher: np.ndarray
    intervals: dict
    profiles: dict
    directions: list
    flags: list


@eqx.filter_jit
def _grid_values(like: AbstractLikelihood, grid):
    return jax.vmap(like.objective)(grid)


@eqx.filter_jit
def held_minimum(like: AbstractLikelihood, x0, fixed, value, options: FitOptions):
    """(φ, −2 ln L) at the minimum from x0 with the components where ``fixed`` held at ``value``
    (a profile point or a node of a joint region; none fixed for the best fit). One compilation
    serves all."""
    insert = lambda p: jnp.where(fixed, value, p)
    phi = insert(
        minimise(lambda p: like.objective(insert(p)), x0, options.optimiser, options.max_steps, options.tolerance)
    )
    return phi, like.terms(phi)[0]


@eqx.filter_jit
def _hessian(like: AbstractLikelihood, phi):
    return jax.hessian(lambda p: like.terms(p)[0])(phi)


def level_interval(x, dy, level):
    """Where the profile dy(x) ≤ ``level`` around its minimum, by linear interpolation of the
    crossings: (low, high, closed_low, closed_high) in x; an end that reaches the grid's edge
    before crossing is open there."""
    k = int(np.argmin(dy))
    ends = []
    for step, last in ((-1, 0), (1, len(x) - 1)):
        end, closed = x[last], False
        for i in range(k, last, step):
            if dy[i + step] > level:
                end, closed = x[i] + (x[i + step] - x[i]) * (level - dy[i]) / (dy[i + step] - dy[i]), True
                break
        ends.append((float(end), closed))
    (lo, closed_lo), (hi, closed_hi) = ends
    return lo, hi, closed_lo, closed_hi


def _profile_axis(parameters: Parametrisation, i: int, phi, cov, n: int) -> np.ndarray:
    """The profile grid of parameter i: its box, or ±4σ (Fisher; at least ±0.5, at most ±10) around φ_i."""
    p = parameters.parameters[i]
    if p.bounded:
        return np.linspace(*p.coordinate_box, n)
    sd = np.sqrt(cov[i, i]) if cov[i, i] > 0 else np.inf
    reach = min(max(4.0 * sd, 0.5), 10.0) if np.isfinite(sd) else 10.0
    return float(phi[i]) + reach * np.linspace(-1.0, 1.0, n)


def _profile(like, phi, i, x, options, lowest):
    """−2 ln L along x with coordinate i fixed, walking outward from the best fit; returns it, φ at
    each point and the lowest (value, φ) seen."""
    prof, points = np.empty(len(x)), np.empty((len(x), len(phi)))
    fixed = jnp.arange(len(phi)) == i
    k0 = int(np.argmin(np.abs(x - float(phi[i]))))
    for order in (range(k0, len(x)), range(k0 - 1, -1, -1)):
        start = phi
        for j in order:
            start, val = held_minimum(like, start, fixed, jnp.asarray(float(x[j])), options)
            prof[j], points[j] = float(val), np.asarray(start)
            if prof[j] < lowest[0] - 1e-9:
                lowest = (prof[j], start)
    return prof, points, lowest


def directions_against_prior(fisher, parameters: Parametrisation, threshold: float):
    """Eigen-directions of the boxed parameters' marginal covariance (the others marginalised),
    their 1σ and the prior half-range along them; flags for those the data do not narrow to less
    than ``threshold`` of it."""
    boxed = [i for i, p in enumerate(parameters.parameters) if p.bounded]
    half = (parameters.coordinate_high - parameters.coordinate_low)[boxed] / 2
    labels = [
        ("ln " if p.transform == Transform.LOG else "") + p.label for p in (parameters.parameters[i] for i in boxed)
    ]
    cov = np.linalg.pinv(fisher)[np.ix_(boxed, boxed)]
    vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    out, flags = [], []
    for v, vec in zip(vals, vecs.T):
        vec = vec / np.max(np.abs(vec)) * np.sign(vec[np.argmax(np.abs(vec))])
        unit = vec / np.linalg.norm(vec)
        prior = float(1.0 / np.max(np.abs(unit) / half))  # centre to box edge along it
        sigma = float(np.sqrt(v)) if v > 0 else float("inf")
        combo = " ".join(f"{c:+.2f}·{n}" for c, n in zip(vec, labels) if abs(c) > 0.05)
        poor = not sigma < threshold * prior
        out.append(
            dict(
                combination=combo,
                vector=unit.tolist(),
                sigma=sigma,
                prior_half_range=prior,
                fraction_of_prior=sigma / prior,
                poorly_constrained=poor,
            )
        )
        if poor:
            flags.append(
                f"{combo} is poorly constrained: its 1σ ({sigma:.3g}) exceeds {threshold:g} of the "
                f"prior half-range along it ({prior:.3g})"
            )
    return out, flags


def goodness_of_fit(likelihood: AbstractLikelihood, phi, n_fitted: int) -> tuple[float, int, float]:
    """(D², degrees of freedom, p-value) at the best fit φ: D² = Σ_b r_bᵀΣ_b⁻¹r_b over the
    likelihood's blocks, the p-value from χ² for Gaussian blocks and from the t's distribution for
    Student-t ones (:func:`jaxcr.inference.tails.p_value`)."""
    parts = likelihood.block_distances(jnp.asarray(phi))
    d2s, sizes, dofs = [float(p[0]) for p in parts], [p[2] for p in parts], [p[3] for p in parts]
    return float(sum(d2s)), sum(sizes) - n_fitted, tails.p_value(d2s, sizes, dofs, n_fitted)


def start_grid(parameters: Parametrisation, points: int) -> np.ndarray:
    """points^P candidate starts over the box of the boxed parameters (the others at 0)."""
    axes = [np.linspace(*p.coordinate_box, points) if p.bounded else np.zeros(1) for p in parameters.parameters]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(parameters))


def maximise_likelihood(
    likelihood: AbstractLikelihood,
    parameters: Parametrisation,
    starts,
    options: FitOptions = FitOptions(),
    progress: str | None = None,
) -> LikelihoodFit:
    """Best fit, profiles, Fisher matrix, intervals and flags of ``likelihood`` (module docstring).

    Args:
        likelihood: any :class:`~jaxcr.inference.likelihood.AbstractLikelihood`.
        parameters: the named parameters of φ, in the likelihood's order (``likelihood.names``),
            with their boxes (infinite for a parameter without one).
        starts: candidate starts (K, P) in the coordinates; the lowest objective is polished.
        progress: the label of a progress bar over the fit's stages (the best fit, then per
            parameter its profile and its calibration if any), or None for no bar.
    """
    from tqdm.auto import tqdm

    if tuple(parameters.names) != tuple(likelihood.names):
        raise ValueError(f"parameters {list(parameters.names)} must be the likelihood's {list(likelihood.names)}")
    total = 1 + options.stages * len(parameters)
    with tqdm(total=total, disable=progress is None, desc=progress, unit="stage") as bar:
        return _maximise(likelihood, parameters, starts, options, tick=lambda: bar.update(1))


def best_fit(likelihood: AbstractLikelihood, starts, options: FitOptions = FitOptions()):
    """(φ, −2 ln L) of the best fit: the candidate start (K, P) with the lowest objective,
    polished by the options' optimiser with every parameter free."""
    starts = jnp.asarray(np.atleast_2d(starts), dtype=float)
    values = np.asarray(_grid_values(likelihood, starts))
    none_fixed = jnp.zeros(starts.shape[1], dtype=bool)
    return held_minimum(likelihood, starts[int(np.nanargmin(values))], none_fixed, jnp.asarray(0.0), options)


def _maximise(likelihood, parameters: Parametrisation, starts, options: FitOptions, tick) -> LikelihoodFit:
    """:func:`maximise_likelihood`, calling ``tick()`` after each stage."""
    none_fixed = jnp.zeros(len(parameters), dtype=bool)
    phi, m2lnl = best_fit(likelihood, starts, options)
    best = float(m2lnl)
    tick()
    fisher = 0.5 * np.asarray(_hessian(likelihood, phi))
    cov = np.linalg.pinv(fisher)
    profiles, raw, points, lowest = {}, {}, {}, (best, phi)
    for i, name in enumerate(parameters.names):
        x = _profile_axis(parameters, i, phi, cov, options.profile_points)
        raw[name], points[name], lowest = _profile(likelihood, phi, i, x, options, lowest)
        p = parameters.parameters[i]
        profiles[name] = dict(
            coordinate=x.tolist(), value=np.asarray(p.to_value(x)).tolist(), transform=p.transform.value, label=p.label
        )
        tick()
    if lowest[0] < best:  # the best fit is the lowest point seen, polished with every parameter free
        phi, m2lnl = held_minimum(likelihood, lowest[1], none_fixed, jnp.asarray(0.0), options)
        best = min(float(m2lnl), lowest[0])
        fisher = 0.5 * np.asarray(_hessian(likelihood, phi))
    intervals: dict[str, dict] = {}
    flags: list[str] = []
    for i, p in enumerate(parameters.parameters):
        x, delta = np.asarray(profiles[p.name]["coordinate"]), raw[p.name] - best
        profiles[p.name]["delta_m2lnl"] = delta.tolist()
        intervals[p.name] = {}
        if options.calibration is not None:
            critical = critical_values(likelihood, i, x, points[p.name], phi, options.calibration, options.optimiser)
            profiles[p.name] |= {f"critical_{lv}": critical.pop(f"critical_{lv}") for lv, _ in LEVELS}
            profiles[p.name]["calibration"] = critical
            tick()
        for level, dy in LEVELS:
            if options.calibration is None:
                lo, hi, c_lo, c_hi = level_interval(x, delta, dy)
            else:
                lo, hi, c_lo, c_hi = calibrated_interval(x, delta, profiles[p.name][f"critical_{level}"])
            intervals[p.name][level] = (float(p.to_value(lo)), float(p.to_value(hi)), c_lo, c_hi)
    directions, poor = directions_against_prior(fisher, parameters, options.poorly_constrained)
    for p in parameters.parameters:
        lo, hi, c_lo, c_hi = intervals[p.name]["68"]
        if p.bounded and not (c_lo and c_hi):
            flags.append(f"{p.name}: the 68 % interval [{lo:.3g}, {hi:.3g}] reaches the edge of the box (open)")
    phi = np.asarray(phi)
    chi2, dof, p_value = goodness_of_fit(likelihood, phi, len(parameters))
    return LikelihoodFit(
        phi=phi,
        values={k: float(v) for k, v in parameters.values(phi).items()},
        m2lnl=best,
        chi2=chi2,
        dof=dof,
        p_value=p_value,
        fisher=fisher,
        intervals=intervals,
        profiles=profiles,
        directions=directions,
        flags=poor + flags,
    )
