"""Intervals calibrated by toys: the Neyman construction with likelihood-ratio ordering.

The profile intervals Δ(−2 ln L) ≤ 1 and 4 cover 68.3 % and 95.4 % where the likelihood is
Gaussian in the parameters and the box is far. One sky pins σ² and ρ to about an e-fold inside a
box 1.4-2.3 e-folds wide, so its intervals are often cut by the box, and there they over-cover
(0.80-1.00 where 0.68 is claimed). The construction of Feldman & Cousins (1998, Phys. Rev. D 57,
3873), with the other parameters at their profile values (the profile construction), replaces the
levels 1 and 4 by critical values c(x) from toys. For each value x of a parameter on ``points``
values across its profile axis:

1. φ(x): the profile point, the parameter at x and the others at their best fit to the data there;
2. ``toys`` data vectors y* drawn at φ(x) from the likelihood's own model (Gaussian or
   multivariate t), or, on an artifact that holds each design point's own scatter, with that
   local covariance (:meth:`~jaxcr.inference.likelihood.AbstractLikelihood.toy_blocks`,
   :func:`draw_toys`);
3. for each, the profile likelihood ratio
   t = min over φ with the parameter at x of −2 ln L(y*) − min over all φ of −2 ln L(y*),
   both minimised inside the box, each from the truth and from the data's best fit;
4. c_68(x) and c_95(x): the 68.27 % and 95.45 % quantiles of t (the probabilities of Δ = 1 and 4
   for one Gaussian parameter).

The interval is where the data's own profile Δ(−2 ln L)(x) ≤ c(x), with c interpolated linearly
between the calibrated values; an end that reaches the box (or the axis of a parameter without
one) is open. For a Gaussian likelihood far from the box c = 1 and 4 and the intervals are the
profile ones; where the box cuts t (the estimate often on the edge) c is smaller and the interval
shorter. The toys follow a model of a sky, so the calibration is as right as that model: drawn
from the pooled covariance they cannot see that single skies scatter 0.3-2.7 times as much at some
design points as the pooled covariance says; drawn from the local covariance they can, while the
likelihood that orders them stays the pooled one (on 160 mock skies of the wide box that moved
the critical values the expected way and the coverage by less than its errors). The coverage on
simulated skies is in docs/fitting.md.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .. import _checks
from ..options import MIN_CALIBRATION_TOYS
from . import tails
from .likelihood import AbstractLikelihood
from .optimise import minimise

__all__ = [
    "NeymanCalibration",
    "LEVEL_PROBABILITIES",
    "likelihood_ratios",
    "critical_values",
    "calibrated_interval",
    "draw_toys",
]

# the coverage of the 68 % and 95 % intervals: P(χ²₁ ≤ 1) and P(χ²₁ ≤ 4)
LEVEL_PROBABILITIES = {"68": 0.6826894921370859, "95": 0.9544997361036416}
ACCEPTED = 1e-6  # Δ(−2 ln L) within this of c(x) counts as accepted (the optimiser's tolerance, in −2 ln L)


@dataclasses.dataclass(frozen=True)
class NeymanCalibration:
    """How intervals are calibrated by toys (module docstring).

    Attributes:
        toys: toy data vectors per calibrated value (≥ 50; the 95 % critical value from N toys has
            about 0.05·N toys above it, so its sampling error falls as 1/√(0.05 N)).
        points: calibrated values per parameter, evenly spaced over the profile axis (≥ 3).
        seed: the toys' seed; the same seed gives the same intervals.
        tolerance, max_steps: each toy's minimisation stops at |∇(−2 ln L)| < ``tolerance`` or
            after ``max_steps`` (t is then off by about tolerance²/curvature, far below its
            sampling error).
    """

    toys: int = 200
    points: int = 9
    seed: int = 0
    tolerance: float = 1e-4
    max_steps: int = 100

    def __post_init__(self):
        if _checks.check_positive_int("toys", self.toys) < MIN_CALIBRATION_TOYS:
            raise ValueError(
                f"toys must be >= {MIN_CALIBRATION_TOYS} (the 95 % critical value needs toys above it); got {self.toys}"
            )
        if _checks.check_positive_int("points", self.points) < 3:
            raise ValueError(f"points must be >= 3 calibrated values per parameter; got {self.points}")
        _checks.check_seed("seed", self.seed)
        _checks.check_positive("tolerance", self.tolerance)
        _checks.check_positive_int("max_steps", self.max_steps)


@eqx.filter_jit
def likelihood_ratios(
    like: AbstractLikelihood,
    truth: Float[Array, " p"],
    fixed: Array,
    start: Float[Array, " p"],
    key: Array,
    toys: int,
    tolerance: float,
    max_steps: int,
    optimiser=None,
) -> Float[Array, " toys"]:
    """The profile likelihood ratio t of the parameters where ``fixed`` (a boolean mask) at their
    true values, for ``toys`` data vectors drawn from ``like`` at ``truth`` with ``key`` (module
    docstring, step 3), minimised by ``optimiser`` (an optax optimiser; None: L-BFGS) to
    ``tolerance`` or ``max_steps`` (:class:`NeymanCalibration`). The key is data, so another seed
    runs the same compiled program. The toys run one after another (``lax.map``): minimisations
    vmapped over the toys stalled XLA's CPU runtime now and then (threads parked, no CPU used; 200
    toys on 2 cores)."""

    def lowest(f, x0s):
        ends = [minimise(f, x0, optimiser, max_steps, tolerance) for x0 in x0s]
        return jnp.min(jnp.stack([f(end) for end in ends]))

    insert = lambda p: jnp.where(fixed, truth, p)

    def ratio(y):
        toy = like.with_data(y)
        free = lowest(toy.objective, (truth, start))
        conditional = lowest(lambda p: toy.objective(insert(p)), (truth, insert(start)))
        return jnp.maximum(conditional - jnp.minimum(free, conditional), 0.0)

    return jax.lax.map(ratio, draw_toys(like, truth, key, toys))


def critical_values(
    like: AbstractLikelihood,
    index: int,
    axis: np.ndarray,
    profile_points: np.ndarray,
    start: np.ndarray,
    calibration: NeymanCalibration,
    optimiser=None,
) -> dict:
    """c_68 and c_95 of parameter ``index`` (module docstring, steps 1-4) on its profile axis.

    Args:
        axis: the profile axis (coordinates) of the parameter, increasing.
        profile_points: φ at each point of the axis (the parameter there, the others profiled).
        start: the data's best fit, where each toy's minimisations start besides the truth.

    Returns:
        {"at": the calibrated coordinates, "68"/"95": c there, "toys": the toys per value,
        "seed": the seed, "critical_68"/"critical_95": c interpolated onto the whole axis}.
    """
    axis = np.asarray(axis, dtype=float)
    at = np.unique(np.round(np.linspace(0, len(axis) - 1, calibration.points)).astype(int))
    key = jax.random.fold_in(jax.random.key(calibration.seed), index)
    fixed = jnp.arange(np.shape(profile_points)[1]) == index
    t = [
        likelihood_ratios(
            like,
            jnp.asarray(profile_points[k], dtype=float),
            fixed,
            jnp.asarray(start, dtype=float),
            jax.random.fold_in(key, int(k)),
            calibration.toys,
            calibration.tolerance,
            calibration.max_steps,
            optimiser,
        )
        for k in at
    ]
    q = np.quantile(np.asarray(t), list(LEVEL_PROBABILITIES.values()), axis=1).T
    out: dict = dict(at=axis[at].tolist(), toys=calibration.toys, seed=calibration.seed)
    for j, level in enumerate(LEVEL_PROBABILITIES):
        out[level] = q[:, j].tolist()
        out[f"critical_{level}"] = np.interp(axis, axis[at], q[:, j]).tolist()
    return out


def calibrated_interval(axis, delta, critical) -> tuple[float, float, bool, bool]:
    """Where the profile Δ(−2 ln L) ≤ c on the axis: from the first to the last accepted point,
    each end interpolated linearly where Δ − c crosses zero; (low, high, closed_low, closed_high)
    in the axis' coordinates, an end at the axis' edge open. Where no point is accepted (c ≈ 0
    beside an estimate between grid points) the interval is the point nearest acceptance."""
    x, g = np.asarray(axis, dtype=float), np.asarray(delta, dtype=float) - np.asarray(critical, dtype=float)
    inside = np.flatnonzero(g <= ACCEPTED)
    if inside.size == 0:
        inside = np.array([int(np.argmin(g))])

    def end(i: int, j: int) -> float:  # i accepted, j its rejected neighbour
        gi = min(g[i], 0.0)
        return float(x[i] + (x[j] - x[i]) * np.clip(-gi / (g[j] - gi), 0.0, 1.0))

    lo, hi = int(inside[0]), int(inside[-1])
    low = (float(x[0]), False) if lo == 0 else (end(lo, lo - 1), True)
    high = (float(x[-1]), False) if hi == len(x) - 1 else (end(hi, hi + 1), True)
    return low[0], high[0], low[1], high[1]


def draw_toys(likelihood: AbstractLikelihood, phi, key: Array, toys: int) -> Float[Array, "toys n"]:
    """``toys`` data vectors of the likelihood's model at φ (:meth:`AbstractLikelihood.toy_blocks`),
    each block Gaussian or t (:func:`jaxcr.inference.tails.draw`). One matrix of standard normals
    drawn with ``key`` serves all blocks (so Gaussian toys are those of the joined mean and
    block-diagonal covariance); block b's t scales are drawn with ``fold_in(key, b)``."""
    parts = likelihood.toy_blocks(phi)
    sizes = [m.shape[0] for m, _, _ in parts]
    normal = jax.random.normal(key, (toys, sum(sizes)), dtype=parts[0][0].dtype)
    columns = jnp.split(normal, np.cumsum(sizes)[:-1], axis=1)
    return jnp.concatenate(
        [
            tails.draw(m, c, dof, jax.random.fold_in(key, b), toys, normal=z)
            for b, ((m, c, dof), z) in enumerate(zip(parts, columns))
        ],
        axis=1,
    )
