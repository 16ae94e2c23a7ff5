"""Named model parameters: what a campaign varies and a fit estimates.

A :class:`Parameter` has a name (the key of every design, emulator, fit, profile, flag, file and
plot), a transform to the coordinate the emulators and optimisers work in (``LOG``: x = ln value,
``LINEAR``: x = value), a prior box [low, high] in physical units (the design's range; fits stay
inside it), its units and a label for plots. A :class:`Parametrisation` is an ordered tuple of
them: θ is the vector of their coordinates x in that order, and every conversion between θ and
named physical values goes through it.

The plane-wave (Giacalone & Jokipii) model of the paper (Eq. 10-11) is fitted in σ² = ⟨δB²⟩/B0²
and ρ = r_L/λ_c (:func:`plane_wave_parametrisation`); a model with a third parameter (the
spectral index γ, say) adds a :class:`Parameter` with that name.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence

import numpy as np

from . import _checks
from .field import as_option

__all__ = ["Transform", "Parameter", "Parametrisation", "plane_wave_parametrisation", "SIGMA2", "RHO"]


class Transform(enum.StrEnum):
    """The coordinate a parameter is emulated and optimised in: ``LOG`` (x = ln value; the value
    must be positive) or ``LINEAR`` (x = value)."""

    LOG = "log"
    LINEAR = "linear"


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One named parameter: its prior box [low, high] (physical units), transform, units, label.

    ``low``/``high`` may be infinite (or ``low`` 0 for LOG) for a parameter without a box (the
    amplitude of a fit with a free CR gradient); a design needs finite ends.
    """

    name: str
    low: float
    high: float
    transform: Transform = Transform.LOG
    units: str = ""
    label: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"Parameter name must be a Python identifier (letters, digits, _); got {self.name!r}")
        object.__setattr__(self, "transform", as_option(Transform, f"{self.name}.transform", self.transform))
        low, high = float(self.low), float(self.high)
        if np.isnan(low) or np.isnan(high) or not low < high:
            raise ValueError(f"parameter {self.name!r}: need low < high; got low = {self.low}, high = {self.high}")
        if self.transform == Transform.LOG and low < 0:
            raise ValueError(f"parameter {self.name!r} is log-transformed: its box must be >= 0; got low = {self.low}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "label", self.label or self.name)

    def to_coordinate(self, value):
        """x of a physical value (ln value for LOG; ln 0 = −∞ for an open lower end)."""
        if self.transform == Transform.LINEAR:
            return value
        with np.errstate(divide="ignore"):
            return np.log(value)

    def to_value(self, x):
        """The physical value of coordinate x, as a JAX array (traced or not; ``float()`` it to report)."""
        import jax.numpy as jnp

        return jnp.exp(x) if self.transform == Transform.LOG else jnp.asarray(x)

    @property
    def bounded(self) -> bool:
        """Whether the box is finite in the coordinate (a design and a profile across it need one)."""
        return bool(np.all(np.isfinite(self.coordinate_box)))

    @property
    def coordinate_box(self) -> tuple[float, float]:
        """(low, high) in the coordinate x."""
        return float(self.to_coordinate(self.low)), float(self.to_coordinate(self.high))

    def as_dict(self) -> dict:
        return dict(
            name=self.name,
            low=self.low,
            high=self.high,
            transform=self.transform.value,
            units=self.units,
            label=self.label,
        )


@dataclasses.dataclass(frozen=True)
class Parametrisation:
    """An ordered tuple of named :class:`Parameter`: θ = their coordinates in this order."""

    parameters: tuple[Parameter, ...]

    def __post_init__(self):
        params = tuple(self.parameters)
        if not params or not all(isinstance(p, Parameter) for p in params):
            raise TypeError("parameters must be a non-empty sequence of Parameter(...)")
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise ValueError(f"parameter names must be unique; got {names}")
        object.__setattr__(self, "parameters", params)

    def __len__(self) -> int:
        return len(self.parameters)

    def __getitem__(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"no parameter {name!r}; the parameters are {list(self.names)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(p.label for p in self.parameters)

    @property
    def coordinate_low(self) -> np.ndarray:
        return np.array([p.coordinate_box[0] for p in self.parameters])

    @property
    def coordinate_high(self) -> np.ndarray:
        return np.array([p.coordinate_box[1] for p in self.parameters])

    def coordinates(self, values: Mapping[str, float]) -> np.ndarray:
        """θ of named physical values (every parameter must be given, no other)."""
        missing = [n for n in self.names if n not in values]
        extra = [n for n in values if n not in self.names]
        if missing or extra:
            raise ValueError(
                f"values must name exactly the parameters {list(self.names)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {extra}" if extra else "")
            )
        for p in self.parameters:
            _checks.check_finite(p.name, values[p.name])
            if p.transform == Transform.LOG:
                _checks.check_positive(p.name, values[p.name])
        return np.array([p.to_coordinate(float(values[p.name])) for p in self.parameters])

    def values(self, theta) -> dict:
        """Named physical values of θ (..., P) as JAX arrays (the forward model's input)."""
        return {p.name: p.to_value(theta[..., i]) for i, p in enumerate(self.parameters)}

    def outside(self, values: Mapping[str, float]) -> list[str]:
        """The parameters whose value lies outside the box (with the box, for messages)."""
        return [
            f"{p.name} = {values[p.name]:.4g} outside [{p.low:.4g}, {p.high:.4g}]"
            for p in self.parameters
            if not p.low <= float(values[p.name]) <= p.high
        ]

    def design_box(self, design) -> Parametrisation:
        """These parameters with their boxes set to the extent of ``design`` (K, P) in θ: where an
        emulator built on that design is trusted."""
        low, high = np.min(design, 0), np.max(design, 0)
        return Parametrisation(
            tuple(
                Parameter(p.name, float(p.to_value(lo)), float(p.to_value(hi)), p.transform, p.units, p.label)
                for p, lo, hi in zip(self.parameters, low, high)
            )
        )

    def widened(self, box: Mapping[str, Sequence[float]]) -> Parametrisation:
        """These parameters with the boxes of the ones named in ``box`` widened to ``box[name]`` =
        (low, high) in physical units; each new box must contain the old one."""
        unknown = sorted(set(box) - set(self.names))
        if unknown:
            raise ValueError(f"box names {unknown}, which are not parameters; the parameters are {list(self.names)}")
        out = []
        for p in self.parameters:
            lo, hi = (float(x) for x in box.get(p.name, (p.low, p.high)))
            if not np.all(np.isfinite([lo, hi])) or (p.transform == Transform.LOG and lo <= 0):
                raise ValueError(
                    f"box[{p.name!r}] = ({lo:g}, {hi:g}) must be finite"
                    + (" and > 0 (log-transformed)" if p.transform == Transform.LOG else "")
                )
            if not (lo <= p.low and hi >= p.high):
                raise ValueError(
                    f"box[{p.name!r}] = ({lo:g}, {hi:g}) must contain the design's box ({p.low:g}, {p.high:g})"
                )
            out.append(Parameter(p.name, lo, hi, p.transform, p.units, p.label))
        return Parametrisation(tuple(out))

    def grid(self, points: int | Sequence[int]) -> np.ndarray:
        """A regular design: ``points`` per parameter (an int for all, or one per parameter),
        evenly spaced in each coordinate between the box's ends. Shape (Π points, P)."""
        n = [points] * len(self) if isinstance(points, (int, np.integer)) else list(points)
        if len(n) != len(self):
            raise ValueError(f"points must be one int or one per parameter {list(self.names)}; got {points!r}")
        axes = []
        for p, k in zip(self.parameters, n):
            if not p.bounded:
                raise ValueError(f"parameter {p.name!r} has no finite box: a design needs one")
            if _checks.check_positive_int("points", k) < 2:
                raise ValueError(f"points must be >= 2 per parameter; got {k} for {p.name}")
            axes.append(np.linspace(*p.coordinate_box, int(k)))
        return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(self))

    def as_dict(self) -> dict:
        return dict(parameters=[p.as_dict() for p in self.parameters])

    @classmethod
    def from_dict(cls, d: Mapping) -> Parametrisation:
        return cls(tuple(Parameter(**p) for p in d["parameters"]))


SIGMA2 = "sigma2"
RHO = "rho"


def plane_wave_parametrisation(sigma2_range=(0.3, 3.0), rho_range=(0.05, 0.2)) -> Parametrisation:
    """The paper's plane-wave model fitted in σ² = ⟨δB²⟩/B0² and ρ = r_L/λ_c, both log-transformed,
    in the boxes ``sigma2_range`` and ``rho_range`` (low, high)."""
    return Parametrisation(
        (
            Parameter(SIGMA2, sigma2_range[0], sigma2_range[1], Transform.LOG, units="", label="σ²"),
            Parameter(RHO, rho_range[0], rho_range[1], Transform.LOG, units="", label="r_L/λ_c"),
        )
    )
