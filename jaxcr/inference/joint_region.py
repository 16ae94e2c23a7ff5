"""The joint confidence region of an artifact's two named parameters (σ² and ρ = r_L/λ_c).

A one-parameter profile interval (Δ(−2 ln L) = 1, 4) is right for one parameter where the
likelihood is Gaussian in it. Where the two parameters trade off along a ridge that the box cuts
(σ² against ρ at small ρ) the pair is the honest statement:

    R_P = {θ in the box : λ(θ) ≤ c_P(θ)},
    λ(θ) = min_ψ −2 ln L(θ, ψ) − min_{θ′, ψ} −2 ln L(θ′, ψ),

with ψ the other fitted parameters (the amplitude a when it is free). The critical value c_P is
either

- the χ²₂ point of probability P, 2.30 and 6.18 for P = 68.27 % and 95.45 % (Wilks' theorem for
  two parameters; :data:`CHI2_2`), or
- with a :class:`RegionThresholds`, the P-quantile of λ at the truth over skies the model itself
  made: a campaign's realisations, fitted one by one as skies
  (:func:`jaxcr.inference.region_calibration.region_thresholds`). This is the Neyman construction
  with the model's own skies as toys. The quantiles are known at the campaign's design points and
  interpolated linearly between them (on the Delaunay triangles of the points, in the
  coordinates). Outside their hull c_P is χ²₂'s, and the share of the box that is calibrated is
  reported.

λ is evaluated on a ``points × points`` grid over the box, with ψ minimised at each node (from the
best fit). The region's extent along each parameter is where λ − c_P crosses 0 between nodes
(linear interpolation along the grid lines). An end where the region reaches the box is open. The
region's share of the box is the share of nodes inside it. The extent is the region's projection,
so it covers the parameter at least as often as the region covers the pair.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from .. import _checks, io
from ..field import as_option
from ..options import SkyScatter
from ..parametrisation import Parametrisation
from .artifact import EmulatorArtifact
from .fit import FitOptions, held_minimum, start_grid
from .likelihood import AbstractLikelihood, AbstractSkyLikelihood, LikelihoodForm
from .neyman import ACCEPTED, LEVEL_PROBABILITIES

__all__ = [
    "CHI2_2",
    "REGION_POINTS",
    "RegionThresholds",
    "profile_on_nodes",
    "joint_region",
    "boxed_pair",
    "region_settings",
]

#: the χ²₂ points of the 68.27 % and 95.45 % levels: P(χ²₂ ≤ c) = 1 − e^(−c/2) = P
CHI2_2 = {level: float(-2.0 * np.log1p(-p)) for level, p in LEVEL_PROBABILITIES.items()}
SNAP = 1e-3  # coordinates (e-folds) this close to a calibration point take its critical values
REGION_POINTS = 21  # nodes per parameter of the region's grid (default)
THRESHOLDS_FORMAT = "jaxcr-region-thresholds/1"


@eqx.filter_jit
def _profile_nodes(like: AbstractLikelihood, phi0, fixed, nodes, options: FitOptions):
    return jax.lax.map(lambda node: held_minimum(like, phi0, fixed, node, options)[1], nodes)


@eqx.filter_jit
def _values_at(like: AbstractLikelihood, nodes):
    return jax.lax.map(lambda p: like.terms(p)[0], nodes)


def profile_on_nodes(
    likelihood: AbstractLikelihood,
    phi: Float[ArrayLike, " p"],
    fixed: np.ndarray,
    nodes: Float[ArrayLike, "m p"],
    options: FitOptions = FitOptions(),
) -> np.ndarray:
    """−2 ln L (m,) at each node with the components where ``fixed`` held at the node's and the
    others minimised from ``phi`` by ``options``' optimiser
    (:func:`~jaxcr.inference.fit.held_minimum`); where every component is fixed, the value at the node. The nodes
    run one after another in one compiled program (``lax.map``): minimisations vmapped over the
    nodes stalled XLA's CPU runtime (jax 0.10.2: threads parked, no CPU used; once for 3721 nodes
    at every try, once for 256 inside a test run), as they did over the toys of
    :mod:`jaxcr.inference.neyman`."""
    points = jnp.asarray(nodes, dtype=float)
    if np.all(fixed):
        return np.asarray(_values_at(likelihood, points))
    return np.asarray(_profile_nodes(likelihood, jnp.asarray(phi), jnp.asarray(fixed, dtype=bool), points, options))


def boxed_pair(parameters: Parametrisation) -> tuple[int, int] | None:
    """The indices of the two boxed parameters, or None when there are not exactly two."""
    boxed = [i for i, p in enumerate(parameters.parameters) if p.bounded]
    return (boxed[0], boxed[1]) if len(boxed) == 2 else None


@dataclasses.dataclass(frozen=True)
class RegionThresholds:
    """Critical values of λ at calibration points of the box (module docstring).

    Attributes:
        names: the two parameters, in the artifact's order.
        points: (K, 2) the calibration points' coordinates (ln σ², ln ρ for the paper's model).
        critical: per level ("68", "95") the (K,) P-quantiles of λ at each point.
        skies: (K,) the skies fitted at each point; refused: (K,) those the likelihood refused.
        settings: what the quantiles hold for: the artifact's version, the likelihood's form, sky
            scatter and tails, whether the amplitude was free, the campaign, the versions and date.
            A fit must match them (:meth:`check_matches`).
    """

    names: tuple[str, ...]
    points: np.ndarray
    critical: dict
    skies: np.ndarray
    refused: np.ndarray
    settings: dict

    def __post_init__(self):
        points = np.asarray(self.points, dtype=float)
        if points.ndim != 2 or points.shape[1] != 2 or len(self.names) != 2:
            raise ValueError(f"RegionThresholds need two named parameters and points (K, 2); got {points.shape}")
        if len(points) < 3 or np.linalg.matrix_rank(points[1:] - points[0]) < 2:
            raise ValueError(
                f"RegionThresholds need at least 3 calibration points not on one line (got {len(points)}); "
                "calibrate on more design points"
            )
        if set(self.critical) != set(LEVEL_PROBABILITIES):
            raise ValueError(
                f"critical must give the levels {sorted(LEVEL_PROBABILITIES)}; got {sorted(self.critical)}"
            )
        for level, values in self.critical.items():
            values = np.asarray(values, dtype=float)
            if values.shape != (len(points),) or not np.all(np.isfinite(values)) or np.any(values < 0):
                raise ValueError(f"critical[{level!r}] must be {len(points)} finite values ≥ 0; got {values}")

    def at(self, coordinates: Float[np.ndarray, "m 2"]) -> tuple[dict, np.ndarray]:
        """Per level the critical values (m,) at ``coordinates``, and whether each is calibrated
        (inside the points' hull, or within :data:`SNAP` of a point) or χ²₂'s (outside)."""
        from scipy.interpolate import LinearNDInterpolator

        coordinates = np.asarray(coordinates, dtype=float)
        points = np.asarray(self.points, dtype=float)
        distance = np.abs(coordinates[:, None, :] - points[None]).max(axis=-1)  # (m, K), largest |Δθ|
        nearest = np.argmin(distance, axis=1)
        snap = distance[np.arange(len(coordinates)), nearest] < SNAP  # a point given to a few digits
        levels = list(self.critical)
        values = np.stack([np.asarray(self.critical[level], dtype=float) for level in levels], -1)  # (K, levels)
        c = np.where(snap[:, None], values[nearest], LinearNDInterpolator(points, values)(coordinates))
        calibrated = np.all(np.isfinite(c), axis=1)
        return {level: np.where(calibrated, c[:, i], CHI2_2[level]) for i, level in enumerate(levels)}, calibrated

    def check_matches(self, settings: dict) -> None:
        """Raise ValueError naming what differs when a fit's ``settings`` (the keys of
        :attr:`settings`' ``fit``) are not those the thresholds were computed for."""
        wanted = self.settings["fit"]
        differ = [
            f"{k}: thresholds {wanted[k]!r}, fit {settings.get(k)!r}" for k in wanted if settings.get(k) != wanted[k]
        ]
        if differ:
            raise ValueError(
                "region_thresholds were calibrated for another fit (" + "; ".join(differ) + "): calibrate them "
                "with the fit's artifact and settings (jaxcr campaign thresholds) or fit with those settings"
            )

    def as_dict(self) -> dict:
        return dict(
            format=THRESHOLDS_FORMAT,
            names=list(self.names),
            points=np.asarray(self.points).tolist(),
            critical={k: np.asarray(v).tolist() for k, v in self.critical.items()},
            skies=np.asarray(self.skies).tolist(),
            refused=np.asarray(self.refused).tolist(),
            settings=self.settings,
        )

    def save(self, path) -> Path:
        return io.write_json(path, self.as_dict())

    @classmethod
    def load(cls, path) -> RegionThresholds:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(
                f"region thresholds {path}: no such file (make one with jaxcr campaign thresholds)"
            ) from None
        except json.JSONDecodeError as err:
            raise ValueError(f"region thresholds {path}: not JSON ({err})") from None
        if not isinstance(d, dict) or d.get("format") != THRESHOLDS_FORMAT:
            raise ValueError(f"{path} is not a region-thresholds file (format {THRESHOLDS_FORMAT})")
        return cls(
            names=tuple(d["names"]),
            points=np.asarray(d["points"], dtype=float),
            critical={k: np.asarray(v, dtype=float) for k, v in d["critical"].items()},
            skies=np.asarray(d["skies"], dtype=int),
            refused=np.asarray(d["refused"], dtype=int),
            settings=d["settings"],
        )


def region_settings(
    artifact: EmulatorArtifact, like: AbstractSkyLikelihood, form, sky_scatter, amplitude_free: bool
) -> dict:
    """What the distribution of λ of a one-sky fit depends on besides the sky, which calibrated
    region thresholds must share (:class:`jaxcr.inference.joint_region.RegionThresholds`)."""
    return dict(
        artifact=artifact.version,
        form=as_option(LikelihoodForm, "form", form).value,
        sky_scatter=as_option(SkyScatter, "sky_scatter", sky_scatter).value,
        tail_dof=like.dof,
        amplitude_free=amplitude_free,
        fitted_ells=np.asarray(artifact.ells)[np.asarray(like.rows)].tolist(),
    )


def _extent(axis: np.ndarray, excess: np.ndarray) -> tuple[float, float, bool, bool] | None:
    """(low, high, closed_low, closed_high) along ``axis`` (the grid's first index) of the nodes
    where ``excess`` = λ − c ≤ 0, the ends interpolated linearly to the crossing from the outside
    neighbour, open where an inside node lies on the box's edge."""
    inside = excess <= ACCEPTED
    lows: list[tuple[float, bool]] = []
    highs: list[tuple[float, bool]] = []
    for column in range(excess.shape[1]):
        k = np.flatnonzero(inside[:, column])
        if len(k) == 0:
            continue
        for end, step, ends in ((k[0], -1, lows), (k[-1], 1, highs)):
            out = end + step
            if out < 0 or out >= len(axis):
                ends.append((float(axis[end]), False))
                continue
            g0, g1 = excess[end, column], excess[out, column]
            t = float(np.clip(-g0 / (g1 - g0), 0.0, 1.0)) if g1 != g0 else 0.0
            ends.append((float(axis[end] + t * (axis[out] - axis[end])), True))
    if not lows:  # no node inside: the region lies between nodes (a finer grid would find it)
        return None
    # an end is open where any line of the grid has the region reaching the box (the end is the edge then)
    return (
        min(v for v, _ in lows),
        max(v for v, _ in highs),
        all(c for _, c in lows),
        all(c for _, c in highs),
    )


def joint_region(
    likelihood: AbstractLikelihood,
    parameters: Parametrisation,
    phi: Float[ArrayLike, " p"],
    m2lnl: float,
    *,
    thresholds: RegionThresholds | None = None,
    points: int = REGION_POINTS,
    options: FitOptions = FitOptions(),
) -> dict:
    """The 68 % and 95 % joint regions of the two boxed parameters around the best fit ``phi``
    (−2 ln L = ``m2lnl`` there) (module docstring), as a JSON-able dict: the grid's axes
    (coordinates and values), λ on it (``delta_m2lnl``, [i][j] at axis 0's i and axis 1's j), the
    critical values, and per level each parameter's extent (low, high, closed_low, closed_high) in
    physical values (None where no node lies inside) and the region's share of the box."""
    pair = boxed_pair(parameters)
    if pair is None:
        raise ValueError(f"a joint region needs exactly two boxed parameters; {list(parameters.names)} have not")
    if _checks.check_positive_int("points", points) < 3:
        raise ValueError(f"points must be >= 3; got {points}")
    if thresholds is not None and tuple(thresholds.names) != tuple(parameters.names[i] for i in pair):
        raise ValueError(
            f"region thresholds are for {list(thresholds.names)}, not {[parameters.names[i] for i in pair]}"
        )
    boxed = [parameters.parameters[i] for i in pair]
    axes = [np.linspace(*p.coordinate_box, points) for p in boxed]
    grid = start_grid(Parametrisation(tuple(boxed)), points)  # axis 0's i and axis 1's j at row i·points + j
    nodes = np.tile(np.asarray(phi, dtype=float), (len(grid), 1))
    nodes[:, list(pair)] = grid
    fixed = np.isin(np.arange(len(parameters)), pair)
    values = profile_on_nodes(likelihood, phi, fixed, nodes, options).reshape(points, points)
    lam = values - min(float(m2lnl), float(values.min()))
    if thresholds is None:
        critical = {level: np.full(len(grid), c) for level, c in CHI2_2.items()}
        calibrated = np.zeros(len(grid), dtype=bool)
    else:
        critical, calibrated = thresholds.at(grid)
    levels = {}
    for level, c in critical.items():
        excess = lam - c.reshape(points, points)
        extent: dict[str, tuple[float, float, bool, bool] | None] = {}
        for axis, p in enumerate(boxed):
            ends = _extent(axes[axis], excess if axis == 0 else excess.T)
            if ends is None:
                extent[p.name] = None
                continue
            lo, hi, c_lo, c_hi = ends
            extent[p.name] = (float(p.to_value(lo)), float(p.to_value(hi)), c_lo, c_hi)
        levels[level] = dict(extent=extent, box_share=float(np.mean(excess <= ACCEPTED)))
    return dict(
        parameters=[p.name for p in boxed],
        labels=[p.label for p in boxed],
        transforms=[p.transform.value for p in boxed],
        coordinate=[a.tolist() for a in axes],
        value=[np.asarray(p.to_value(a)).tolist() for p, a in zip(boxed, axes)],
        delta_m2lnl=lam.tolist(),
        critical={level: c.reshape(points, points).tolist() for level, c in critical.items()},
        thresholds="chi2_2" if thresholds is None else "calibrated",
        calibrated_share=float(np.mean(calibrated)),
        calibrated=calibrated.reshape(points, points).tolist(),
        calibration=None if thresholds is None else thresholds.settings,
        levels=levels,
    )
