"""Turbulence models: named physical parameters → the field's :class:`jaxcr.TurbulenceParameters`.

A model spectrum is a function of a few named parameters (:mod:`jaxcr.parametrisation`). An
:class:`AbstractTurbulenceModel` says which names it understands and turns their values into the
turbulence of the field (Eq. 10-11), in units of the Larmor radius r_L; everything above it (the
forward model, campaigns, emulators, fits) sees only the names. :class:`PlaneWaveGJ99` is the
paper's model; a second model (slab + 2D, an anisotropic cascade) is another subclass.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

import equinox as eqx
import numpy as np

from . import _checks
from .turbulence import KOLMOGOROV_INDEX, TurbulenceParameters

__all__ = [
    "AbstractTurbulenceModel",
    "PlaneWaveGJ99",
    "turbulence_model_from_dict",
    "resonant_lambda_min",
    "default_modes",
    "DEFAULT_LAMBDA_MIN_OVER_LC",
    "MODES_PER_DECADE",
]

DEFAULT_LAMBDA_MIN_OVER_LC = 0.1  # PlaneWaveGJ99's λ_min/λ_c, kept where the design's ρ allows it
MODES_PER_DECADE = 16  # the default density of modes: 32 over 0.1-10 λ_c


def resonant_lambda_min(rho_min: float) -> float:
    """λ_min/λ_c for a design from r_L/λ_c = rho_min: 0.1, or π·rho_min to one digit where that is
    smaller, so that the modes reach below the gyro-resonant wavelength 2π r_L at every point
    (without a resonant mode ⟨C_ℓ⟩ came out 110-180 times too large at ρ = 0.01: docs/fitting.md)."""
    return min(DEFAULT_LAMBDA_MIN_OVER_LC, float(f"{np.pi * rho_min:.1g}"))


def default_modes(lambda_min_over_lc: float, lambda_max_over_lc: float) -> int:
    """MODES_PER_DECADE modes per decade of wavelength (32 over the default 0.1-10 λ_c)."""
    return int(round(MODES_PER_DECADE * np.log10(lambda_max_over_lc / lambda_min_over_lc)))


class AbstractTurbulenceModel(eqx.Module):
    """Named parameters → :class:`jaxcr.TurbulenceParameters` in units of r_L; ``gaussian_amplitudes``
    says how the mode amplitudes are drawn (:class:`jaxcr.TurbulenceNoise`)."""

    gaussian_amplitudes: eqx.AbstractVar[bool]

    @property
    @abc.abstractmethod
    def required(self) -> tuple[str, ...]:
        """The names every parametrisation of this model must give."""

    @property
    @abc.abstractmethod
    def optional(self) -> tuple[str, ...]:
        """Names a parametrisation may give in addition (else the model's fixed value is used)."""

    @abc.abstractmethod
    def turbulence(self, values: Mapping) -> TurbulenceParameters:
        """The turbulence at the named physical values (may be traced)."""

    @abc.abstractmethod
    def as_dict(self) -> dict:
        """The model's fixed settings as JSON-ready values, with its ``kind``."""

    def check_names(self, names) -> None:
        """Raise unless ``names`` hold every required name and nothing the model does not know."""
        missing = [n for n in self.required if n not in names]
        unknown = [n for n in names if n not in self.required + self.optional]
        if missing or unknown:
            raise ValueError(
                f"{type(self).__name__} needs the parameters {list(self.required)} (optional: {list(self.optional)})"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {unknown}" if unknown else "")
            )


class PlaneWaveGJ99(AbstractTurbulenceModel):
    """The paper's plane-wave turbulence (Giacalone & Jokipii 1999; Eq. 10-11) with named parameters
    σ² (``sigma2``) and ρ = r_L/λ_c (``rho``), and optionally the spectral index γ
    (``spectral_index``). In r_L: λ_c = 1/ρ, λ_min,max = (λ_min,max/λ_c)/ρ.

    Attributes:
        n_modes: plane waves N.
        lambda_min_over_lc, lambda_max_over_lc: the wavelength range in units of λ_c.
        spectral_index: γ when it is not a fitted parameter (11/3, Kolmogorov).
        gaussian_amplitudes: draw Gaussian mode amplitudes (:class:`jaxcr.TurbulenceNoise`).
    """

    n_modes: int = eqx.field(static=True, default=32)
    lambda_min_over_lc: float = eqx.field(static=True, default=DEFAULT_LAMBDA_MIN_OVER_LC)
    lambda_max_over_lc: float = eqx.field(static=True, default=10.0)
    spectral_index: float = eqx.field(static=True, default=KOLMOGOROV_INDEX)
    gaussian_amplitudes: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        _checks.check_positive_int("n_modes", self.n_modes)
        _checks.check_positive("lambda_min_over_lc", self.lambda_min_over_lc)
        _checks.check_less("lambda_min_over_lc", self.lambda_min_over_lc, "lambda_max_over_lc", self.lambda_max_over_lc)
        _checks.check_finite("spectral_index", self.spectral_index)
        _checks.check_bool("gaussian_amplitudes", self.gaussian_amplitudes)

    @property
    def required(self) -> tuple[str, ...]:
        return ("sigma2", "rho")

    @property
    def optional(self) -> tuple[str, ...]:
        return ("spectral_index",)

    def turbulence(self, values: Mapping) -> TurbulenceParameters:
        rho = values["rho"]
        return TurbulenceParameters(
            sigma2=values["sigma2"],
            coherence_length=1.0 / rho,
            lambda_min=self.lambda_min_over_lc / rho,
            lambda_max=self.lambda_max_over_lc / rho,
            n_modes=self.n_modes,
            spectral_index=values.get("spectral_index", self.spectral_index),
        )

    def as_dict(self) -> dict:
        return dict(
            kind="plane_wave_gj99",
            n_modes=self.n_modes,
            lambda_min_over_lc=float(self.lambda_min_over_lc),
            lambda_max_over_lc=float(self.lambda_max_over_lc),
            spectral_index=float(self.spectral_index),
            gaussian_amplitudes=bool(self.gaussian_amplitudes),
        )

    @classmethod
    def from_dict(cls, d: Mapping) -> PlaneWaveGJ99:
        d = {k: v for k, v in d.items() if k != "kind"}
        return cls(**d)


def turbulence_model_from_dict(d: Mapping) -> AbstractTurbulenceModel:
    """The turbulence model of :meth:`AbstractTurbulenceModel.as_dict`'s record."""
    kinds = {"plane_wave_gj99": PlaneWaveGJ99}
    kind = d.get("kind")
    if kind not in kinds:
        raise ValueError(f"unknown turbulence model kind {kind!r}; known: {sorted(kinds)}")
    return kinds[kind].from_dict(d)
