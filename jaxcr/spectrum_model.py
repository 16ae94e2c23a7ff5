"""The model spectrum of one analysis as a function of named parameters: one configuration.

:class:`SpectrumModel` holds everything but the fitted parameters: the turbulence model
(:mod:`jaxcr.turbulence_model`, which turns named values such as σ² and ρ = r_L/λ_c into the
field), the sky's resolution, N_B realisations, the backtracking time, the Boris step, the B0 and
CR-gradient directions (the observatory's equatorial frame), the analysis
(:class:`jaxcr.analysis.Analysis`), the seed, and how the field's mode sum is evaluated
(precision and layout). For named values it builds the :class:`jaxcr.SkyModel` of the forward
model (:mod:`jaxcr.forward`); every path to backtracked maps goes through it:

* :func:`realisation_spectra`: per-realisation spectra of the unit-gradient sky δI = r(−T)·ĝ (Eq. 7);
* :func:`backtracked_maps`: the maps themselves at several times, and each map's own white
  pixel-noise level (:func:`pixel_noise_level`, Eq. 12 measured on the map).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _checks
from .analysis import Analysis
from .backtracking import backtrack
from .dynamics import Boris, check_step_resolves, default_step
from .field import FieldPrecision, ModeSumLayout, as_option
from .forward import SkyModel, final_spectra, sample_fields, sky_maps, sky_spectra
from .random import realisation_keys
from .spectra import max_lmax
from .turbulence import TurbulenceParameters
from .turbulence_model import AbstractTurbulenceModel, PlaneWaveGJ99, turbulence_model_from_dict

__all__ = [
    "SpectrumModel",
    "realisation_spectra",
    "spectrum_covariance",
    "backtracked_maps",
    "pixel_noise_level",
]


@dataclasses.dataclass(frozen=True)
class SpectrumModel:
    """Settings of the model spectrum (all but the fitted parameters). Lengths in r_L, times in 1/Ω.

    Attributes:
        nside: HEALPix resolution of the backtracked sky (C_ℓ for ℓ ≤ 2·nside − 1).
        n_realisations: N_B field realisations.
        time: the backtracking time ΩT.
        turbulence: the turbulence model (:class:`jaxcr.turbulence_model.PlaneWaveGJ99` by default).
        dt: the Boris step (1/Ω); None takes :func:`jaxcr.default_step` at the values where a run
            starts (:meth:`resolved`) and keeps it, so the model compiles once.
        b0_direction, gradient_direction: unit vectors of B0 and the CR gradient (equatorial).
        analysis: how the sky is observed (:class:`jaxcr.analysis.Analysis`).
        seed: the realisations' seed (:func:`jaxcr.random.realisation_keys`).
        field_precision, field_layout: how the mode sum is evaluated (:class:`jaxcr.FieldPrecision`,
            :class:`jaxcr.ModeSumLayout`); FAST and FLOAT32 trade accuracy (≤ 1e-9, ≤ 3e-7 of b_rms)
            for speed.
    """

    nside: int = 4
    n_realisations: int = 32
    time: float = 30.0
    turbulence: AbstractTurbulenceModel = PlaneWaveGJ99()
    dt: float | None = None
    b0_direction: tuple = (0.0, 0.0, 1.0)
    gradient_direction: tuple = (1.0, 0.0, 0.0)
    analysis: Analysis = Analysis()
    seed: int = 0
    field_precision: FieldPrecision = FieldPrecision.FLOAT64
    field_layout: ModeSumLayout = ModeSumLayout.AUTO

    def __post_init__(self):
        _checks.check_power_of_two("nside", self.nside)
        _checks.check_positive_int("n_realisations", self.n_realisations)
        if self.n_realisations < 2:
            raise ValueError("n_realisations must be >= 2 (standard errors come from the spread over realisations)")
        _checks.check_positive("time", self.time)
        if self.dt is not None:
            _checks.check_positive("dt", self.dt)
        if not isinstance(self.turbulence, AbstractTurbulenceModel):
            raise TypeError(f"turbulence must be a turbulence model (PlaneWaveGJ99()); got {self.turbulence!r}")
        if not isinstance(self.analysis, Analysis):
            raise TypeError(f"analysis must be an Analysis (jaxcr.analysis); got {type(self.analysis).__name__}")
        for name in ("b0_direction", "gradient_direction"):
            value = tuple(float(v) for v in np.ravel(getattr(self, name)))
            _checks.check_unit_vectors(name, np.asarray(value))
            object.__setattr__(self, name, value)
        _checks.check_seed("seed", self.seed)
        object.__setattr__(self, "field_precision", as_option(FieldPrecision, "field_precision", self.field_precision))
        object.__setattr__(self, "field_layout", as_option(ModeSumLayout, "field_layout", self.field_layout))

    def as_dict(self) -> dict:
        """The settings as JSON-ready values (options as their strings, directions as lists)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (Analysis, AbstractTurbulenceModel)):
                v = v.as_dict()
            out[f.name] = v.value if isinstance(v, enum.Enum) else (list(v) if isinstance(v, tuple) else v)
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> SpectrumModel:
        """The model of :meth:`as_dict`'s values."""
        d = dict(d)
        d["turbulence"] = turbulence_model_from_dict(d["turbulence"])
        d["analysis"] = Analysis.from_dict(d["analysis"])
        return cls(**d)

    def replace(self, **changes) -> SpectrumModel:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)

    def turbulence_at(self, values: Mapping) -> TurbulenceParameters:
        """The turbulence (lengths in r_L) at the named physical values."""
        return self.turbulence.turbulence(values)

    def resolved(self, values: Mapping) -> SpectrumModel:
        """The model with ``dt`` fixed: its own (checked against the field at ``values``), or the
        default step there (concrete values)."""
        params = self.turbulence_at(values)
        if self.dt is not None:
            check_step_resolves(float(self.dt), params.resolution_scales())
            return self
        return self.replace(dt=default_step(params))

    @property
    def cos2_gradient_b0(self) -> float:
        """cos² of the angle between the CR gradient and B0 (both unit vectors)."""
        return float(np.dot(self.b0_direction, self.gradient_direction)) ** 2

    @property
    def lmax(self) -> int:
        return max_lmax(self.nside)

    def sky_model(self, values: Mapping, differentiable: bool = False) -> SkyModel:
        """The :class:`jaxcr.SkyModel` at the named values (may be traced; ``dt`` must be set).
        ``differentiable``: Boris steps one diffrax step each (``fused=False``), so that JAX can
        differentiate through the orbits."""
        if self.dt is None:
            raise ValueError("SpectrumModel.dt is unset: call model.resolved(values) first")
        return SkyModel(
            turbulence=self.turbulence_at(values),
            b0_direction=jnp.asarray(self.b0_direction, dtype=float),
            gradients=jnp.asarray([self.gradient_direction], dtype=float),
            gradient_names=("gradient",),
            times=(float(self.time),),
            nside=self.nside,
            solver=Boris(dt=float(self.dt), fused=not differentiable),
            analysis=self.analysis,
            gaussian_amplitudes=self.turbulence.gaussian_amplitudes,
            field_precision=self.field_precision,
            field_layout=self.field_layout,
        )

    def fields(self, values: Mapping):
        """The model's N_B field realisations at the named values, stacked (the same fields as
        :meth:`jaxcr.PlaneWaveTurbulence.sample` for the same seed and index)."""
        model = self.resolved(values)
        return sample_fields(model.sky_model(values), realisation_keys(self.seed, self.n_realisations))


def realisation_spectra(values: Mapping, model: SpectrumModel, stream: int = 0, adjoint=None) -> Float[Array, "R l"]:
    """Per-realisation spectra (R, lmax+1) of the unit-gradient model sky at the named ``values``
    (each a number, or one per realisation, shape (R,): realisation i at its own values):
    realisation keys :func:`jaxcr.random.realisation_keys` (seed, R, ``stream``), passed traced so
    that models differing only in seed or stream share one compiled function. An explicit
    ``model.dt`` must resolve the field at every concrete value (:meth:`SpectrumModel.resolved`)."""
    if model.dt is None:
        if any(_checks.is_traced(v) or np.ndim(v) for v in values.values()):
            raise ValueError("SpectrumModel.dt is unset and the values are traced or per realisation: call "
                             "model.resolved(values) first")  # fmt: skip
        model = model.resolved(values)
    elif not any(_checks.is_traced(v) for v in values.values()):  # an explicit dt must resolve every field
        n = max([int(np.size(v)) for v in values.values()] + [1])
        for i in range(n):
            model.resolved({k: float(np.ravel(v)[i % np.size(v)]) for k, v in values.items()})
    keys = realisation_keys(model.seed, model.n_realisations, stream=stream)
    shape = (model.n_realisations,)
    per_realisation = {k: jnp.broadcast_to(jnp.asarray(v, dtype=float), shape) for k, v in values.items()}
    return _spectra_compiled(per_realisation, keys, model.replace(seed=0), adjoint)


@eqx.filter_jit
def _spectra_compiled(values, keys, model: SpectrumModel, adjoint):
    def one(args):
        key, own = args
        sky = model.sky_model(own, differentiable=adjoint is not None)
        return final_spectra(sky, key[None], adjoint)[0, 0]

    # several realisations per map (≈ 2048 particles) keep the vector units busy at small nside
    batch = max(1, min(model.n_realisations, 2048 // (12 * model.nside**2)))
    return jax.lax.map(one, (keys, values), batch_size=batch)


def spectrum_covariance(spectra):
    """ℓ-ℓ' covariance S of per-realisation spectra (R, L) → (L, L): the cosmic variance of one sky."""
    x = spectra - spectra.mean(0)
    return x.T @ x / (spectra.shape[0] - 1)


def pixel_noise_level(maps, cl_full) -> np.ndarray:
    """The white pixel-noise level N̂ (full-sky C_ℓ) of backtracked maps, Eq. 12 measured.

    At late times neighbouring pixels' orbits are uncorrelated and the map carries white noise
    N ≈ (4π/N_pix)·2T gᵀKg (Eq. 12) on top of the sky's C_ℓ; earlier, the orbits of neighbouring
    pixels are still correlated and the noise is smaller. Measured from the map itself: the pixel
    variance holds Σ_ℓ (2ℓ+1) C_ℓ/4π over all N_pix modes of the map, the full-sky spectrum
    ``cl_full`` (..., lmax+1) the (lmax+1)² modes with ℓ ≤ lmax, so the power left over, spread
    over the N_pix − (lmax+1)² modes beyond lmax, is the white level:
    N̂ = [4π Var − Σ_{1≤ℓ≤lmax} (2ℓ+1) C_ℓ] / (N_pix − (lmax+1)²). It is 0 for a smooth map and
    Eq. 12 once the map is white. Shape (...,).
    """
    maps, cl_full = np.asarray(maps), np.asarray(cl_full)
    npix, n_ell = maps.shape[-1], cl_full.shape[-1]
    ell = np.arange(n_ell)
    captured = np.sum(((2 * ell + 1) * cl_full)[..., 1:], axis=-1)
    return np.maximum(4 * np.pi * maps.var(-1) - captured, 0.0) / (npix - n_ell**2)


def backtracked_maps(model: SpectrumModel, values: Mapping, keys, times) -> tuple[np.ndarray, np.ndarray]:
    """Unit-gradient maps δI = r(−T)·ĝ (Eq. 7) of the realisations ``keys`` of ``model`` at the
    named ``values`` (``dt`` set), every pixel backtracked to each ΩT of ``times``, shape (R, T, P),
    and each map's pixel-noise level (:func:`pixel_noise_level`, from its full-sky spectrum), (R, T)."""
    sky = model.sky_model(values)
    full = sky.replace(analysis=Analysis())
    traj = backtrack(sample_fields(sky, keys), sky.directions, list(times), **sky.solver_options())
    maps = np.stack(
        [np.asarray(sky_maps(sky, traj.positions[:, j], traj.momenta[:, j]))[:, 0] for j in range(len(times))], 1
    )
    noise = np.stack(
        [pixel_noise_level(m, np.asarray(sky_spectra(full, m[:, None]))[:, 0]) for m in maps.swapaxes(0, 1)], 1
    )
    return maps, noise
