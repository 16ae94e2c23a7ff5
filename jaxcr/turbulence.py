"""Plane-wave magnetic turbulence (Giacalone & Jokipii 1999; paper Eq. 10-11).

    B(r) = B0 ê + δB(r),
    δB(r) = Σ_{n=1..N} A(k_n) (a_n cos α_n + b_n sin α_n) cos(k_n·r + β_n)          (Eq. 10)

with k̂_n uniform on the sphere, |k_n| = k_min exp((n-1)Δ), Δ = ln(k_max/k_min)/N,
k = 2π/λ, α_n, β_n uniform in [0, 2π), a_n = unit(k_n × ẑ), b_n = unit(k_n × a_n), and

    A²(k_n) = 2 σ² B0² G(k_n) / Σ_m G(k_m),   G(k) = 4π k² · kΔ / (1 + (k λ_c)^γ)     (Eq. 11)

so that the spatial mean of |δB|² is σ² B0². Everything is in internal units (lengths in r_L,
fields in B0; see :mod:`jaxcr.units`). Pure turbulence (B0 = 0, the gedankenexperiment of
Sec. 2) uses ``b0=0``: the field unit is then a reference field B_ref with σ² = ⟨δB²⟩/B_ref² and
r_L = p/(|q| B_ref).

The random draws (directions, α, β) are the field's *noise* (:class:`TurbulenceNoise`); σ², λ_c,
r_L, λ_min, λ_max, γ are its *parameters* (:class:`TurbulenceParameters`). Amplitudes and wave numbers
are computed from them inside traced code, so ``jax.grad`` in σ², λ_c and r_L exists.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Key, PRNGKeyArray

from . import _checks, native, pallas_kernel
from ._fastmath import xla_mode_sum
from .field import AbstractField, FieldPrecision, ModeSumLayout, as_option
from .random import realisation_key, realisation_keys

__all__ = [
    "TurbulenceParameters",
    "TurbulenceNoise",
    "PlaneWaveTurbulence",
    "mode_wavenumbers",
    "mode_amplitudes",
    "spectral_weight",
    "polarisation_basis",
]

KOLMOGOROV_INDEX = 11.0 / 3.0


class TurbulenceParameters(eqx.Module):
    """Physical parameters of the turbulence (paper Sec. 4).

    Lengths (``coherence_length``, ``lambda_min``, ``lambda_max``, ``larmor_radius``) are in any
    one unit (pc, or r_L); internally they are divided by ``larmor_radius``, so with the default
    ``larmor_radius=1`` they are already in Larmor radii. Keeping r_L explicit lets ``jax.grad``
    differentiate with respect to it.

    Attributes:
        sigma2: turbulence level σ² = ⟨δB²⟩/B0² (paper: 1).
        coherence_length: λ_c (paper: r_L = 0.1 λ_c, i.e. λ_c = 10 r_L).
        lambda_min, lambda_max: smallest and largest wavelength (paper: 0.01 λ_c and 100 λ_c).
        larmor_radius: r_L in the same length unit.
        spectral_index: γ in G(k) (11/3, Kolmogorov).
        b0: regular field strength in units of the field unit (1; 0 for pure turbulence).
        n_modes: number of plane waves N (static).
    """

    sigma2: Float[Array, ""]
    coherence_length: Float[Array, ""]
    lambda_min: Float[Array, ""]
    lambda_max: Float[Array, ""]
    larmor_radius: Float[Array, ""]
    spectral_index: Float[Array, ""]
    b0: Float[Array, ""]
    n_modes: int = eqx.field(static=True)

    def __init__(
        self,
        sigma2=1.0,
        coherence_length=10.0,
        lambda_min=0.1,
        lambda_max=1000.0,
        n_modes: int = 256,
        larmor_radius=1.0,
        spectral_index=KOLMOGOROV_INDEX,
        b0=1.0,
    ):
        for name, value in (
            ("sigma2", sigma2),
            ("coherence_length", coherence_length),
            ("lambda_min", lambda_min),
            ("lambda_max", lambda_max),
            ("larmor_radius", larmor_radius),
            ("spectral_index", spectral_index),
            ("b0", b0),
        ):
            _checks.check_scalar(name, value)
        _checks.check_nonnegative("sigma2", sigma2)
        _checks.check_positive("coherence_length", coherence_length)
        _checks.check_positive("lambda_min", lambda_min)
        _checks.check_positive("lambda_max", lambda_max)
        _checks.check_less("lambda_min", lambda_min, "lambda_max", lambda_max)
        _checks.check_positive("larmor_radius", larmor_radius)
        _checks.check_finite("spectral_index", spectral_index)
        _checks.check_nonnegative("b0", b0)
        self.n_modes = _checks.check_positive_int("n_modes", n_modes)
        as_float = lambda x: jnp.asarray(x, dtype=float)
        self.sigma2 = as_float(sigma2)
        self.coherence_length = as_float(coherence_length)
        self.lambda_min = as_float(lambda_min)
        self.lambda_max = as_float(lambda_max)
        self.larmor_radius = as_float(larmor_radius)
        self.spectral_index = as_float(spectral_index)
        self.b0 = as_float(b0)

    @classmethod
    def paper(cls, n_modes: int = 256, **overrides) -> "TurbulenceParameters":
        """The setup of the paper (Sec. 4): σ² = 1, r_L = 0.1 λ_c, λ_min = 0.01 λ_c, λ_max = 100 λ_c.

        Lengths in Larmor radii: λ_c = 10, λ_min = 0.1, λ_max = 1000. The paper does not state N.
        """
        kw: dict = dict(sigma2=1.0, coherence_length=10.0, lambda_min=0.1, lambda_max=1000.0)
        kw.update(overrides)
        return cls(n_modes=n_modes, **kw)

    def resolution_scales(self) -> tuple[float, float] | None:
        """(smallest wavelength of the field's modes in r_L, |b0| + 3σ) that a step must resolve
        (:func:`jaxcr.dynamics.check_step_resolves`); None when the parameters are traced."""
        k = _checks.concrete(mode_wavenumbers(self))
        s2, b0 = _checks.concrete(self.sigma2), _checks.concrete(self.b0)
        if k is None or s2 is None or b0 is None:
            return None
        return 2 * np.pi / float(np.max(k)), float(abs(b0) + 3 * np.sqrt(s2))

    def as_dict(self) -> dict:
        """The parameters as plain numbers (floats, and the int ``n_modes``): what results record."""
        names = ("sigma2", "coherence_length", "lambda_min", "lambda_max", "larmor_radius", "spectral_index", "b0")
        return {k: float(getattr(self, k)) for k in names} | {"n_modes": self.n_modes}

    @property
    def rigidity_ratio(self):
        """r_L / λ_c, the combination that mainly sets the shape of the spectrum."""
        return self.larmor_radius / self.coherence_length


def mode_wavenumbers(params: TurbulenceParameters) -> Float[Array, " N"]:
    """|k_n| = k_min exp((n-1)Δ), n = 1..N, in 1/r_L (paper Sec. 4). k = 2π/λ."""
    _checks.require_x64("mode_wavenumbers")
    k_min = 2 * jnp.pi * params.larmor_radius / params.lambda_max
    k_max = 2 * jnp.pi * params.larmor_radius / params.lambda_min
    delta = jnp.log(k_max / k_min) / params.n_modes
    n = jnp.arange(params.n_modes)
    return k_min * jnp.exp(n * delta)


def spectral_weight(k, params: TurbulenceParameters):
    """G(k) = 4π k² · kΔ / (1 + (k λ_c)^γ) (paper Eq. 11), k in 1/r_L."""
    k_min = 2 * jnp.pi * params.larmor_radius / params.lambda_max
    k_max = 2 * jnp.pi * params.larmor_radius / params.lambda_min
    delta = jnp.log(k_max / k_min) / params.n_modes
    lam_c = params.coherence_length / params.larmor_radius
    return 4 * jnp.pi * k**2 * (k * delta) / (1 + (k * lam_c) ** params.spectral_index)


def mode_amplitudes(params: TurbulenceParameters) -> Float[Array, " N"]:
    """A(k_n) = sqrt(2 σ² G(k_n)/Σ_m G(k_m)) in units of B0 (paper Eq. 11)."""
    g = spectral_weight(mode_wavenumbers(params), params)
    return jnp.sqrt(2 * params.sigma2 * g / jnp.sum(g))


class TurbulenceNoise(eqx.Module):
    """The random draws of one field realisation: k̂_n, α_n, β_n, and optionally Gaussian amplitudes.

    With ``gaussian`` = (ξ_n, η_n) ~ N(0, 1) the polarisation vectors are
    E_n = A_n/√2 (ξ_n a_n + η_n b_n) instead of A_n (a_n cos α_n + b_n sin α_n): the same
    ⟨|E_n|²⟩ = A_n², but drawn from a density that depends on σ², which the score-function
    gradient estimator needs (:mod:`jaxcr.inference.estimators`).
    """

    directions: Float[Array, "N 3"]
    alpha: Float[Array, " N"]
    beta: Float[Array, " N"]
    gaussian: Float[Array, "2 N"] | None = None

    @classmethod
    def sample(cls, key: PRNGKeyArray, n_modes: int, gaussian_amplitudes: bool = False) -> "TurbulenceNoise":
        """k̂ uniform on the sphere (cos θ uniform in [-1, 1]), α, β uniform in [0, 2π).

        The Gaussian amplitudes, if asked for, come from ``fold_in(key, 7)``, so the directions
        and phases are the same with and without them.
        """
        k1, k2, k3, k4 = jax.random.split(key, 4)
        cos_t = jax.random.uniform(k1, (n_modes,), minval=-1.0, maxval=1.0)
        phi = jax.random.uniform(k2, (n_modes,), minval=0.0, maxval=2 * jnp.pi)
        sin_t = jnp.sqrt(1 - cos_t**2)
        directions = jnp.stack([sin_t * jnp.cos(phi), sin_t * jnp.sin(phi), cos_t], axis=-1)
        alpha = jax.random.uniform(k3, (n_modes,), minval=0.0, maxval=2 * jnp.pi)
        beta = jax.random.uniform(k4, (n_modes,), minval=0.0, maxval=2 * jnp.pi)
        gaussian = jax.random.normal(jax.random.fold_in(key, 7), (2, n_modes)) if gaussian_amplitudes else None
        return cls(directions, alpha, beta, gaussian)

    def sigma2_score(self) -> Float[Array, ""]:
        """d ln p / d ln σ² of the Gaussian amplitudes (A_n ∝ σ): Σ_n (ξ_n² + η_n² − 2)/2."""
        if self.gaussian is None:
            raise ValueError(
                "the score needs Gaussian amplitudes (TurbulenceNoise.sample(..., gaussian_amplitudes=True))"
            )
        return 0.5 * jnp.sum(self.gaussian[0] ** 2 + self.gaussian[1] ** 2 - 2.0)


def _unit(v):
    return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def polarisation_basis(k_hat: Float[ArrayLike, "N 3"]) -> tuple[Float[Array, "N 3"], Float[Array, "N 3"]]:
    """a_n = unit(k̂_n × ẑ), b_n = unit(k̂_n × a_n). For k̂ ∥ ẑ (measure zero) a_n = x̂."""
    z = jnp.array([0.0, 0.0, 1.0])
    cross = jnp.cross(k_hat, z)
    norm = jnp.linalg.norm(cross, axis=-1, keepdims=True)
    degenerate = norm < 1e-12
    a = jnp.where(degenerate, jnp.array([1.0, 0.0, 0.0]), cross / jnp.where(degenerate, 1.0, norm))
    b = _unit(jnp.cross(k_hat, a))
    return a, b


class PlaneWaveTurbulence(AbstractField):
    """A static magnetic field b(r) = b0 ê + Σ_n E_n cos(k_n·r + β_n), internal units (Eq. 10).

    ``E_n = A(k_n)(a_n cos α_n + b_n sin α_n)`` are the polarisation vectors (amplitude included),
    ``k_n`` the wave vectors in 1/r_L, ``β_n`` the phases, ``regular_field`` = b0 ê. A stack of
    realisations is the same Module with a leading batch axis on every array
    (see :meth:`sample_ensemble`). Called on positions (..., 3) it gives the total field b (..., 3).

    ``precision`` (:class:`jaxcr.FieldPrecision`: FLOAT64 to ~1e-13, FAST to ~1e-9, FLOAT32
    to ~5e-7 of the rms field, phases always float64) and ``layout`` (:class:`jaxcr.ModeSumLayout`:
    AUTO is the native C++ kernel on CPU, the Pallas kernel on GPU and SPLIT on TPU; MATMUL
    keeps 0.1.0's CPU results bit for bit) are static. Matrix products run at Precision.HIGHEST (on GPUs
    a float32 product would otherwise use TF32: 6.5e-4 of the rms field off on an H200).
    """

    wavevectors: Float[Array, "*R N 3"]
    polarisations: Float[Array, "*R N 3"]
    phases: Float[Array, "*R N"]
    regular_field: Float[Array, "*R 3"]
    precision: FieldPrecision = eqx.field(static=True, default=FieldPrecision.FLOAT64)
    layout: ModeSumLayout = eqx.field(static=True, default=ModeSumLayout.AUTO)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_modes(cls, wavevectors, polarisations, phases, regular_field=(0.0, 0.0, 1.0)) -> "PlaneWaveTurbulence":
        """A field from explicit mode arrays (e.g. exported from another code), internal units.

        Args:
            wavevectors: k_n, shape (N, 3), in 1/r_L.
            polarisations: E_n = A_n(a_n cos α_n + b_n sin α_n), shape (N, 3), in units of B0.
            phases: β_n, shape (N,), radians.
            regular_field: b0 ê, shape (3,), in units of B0.
        """
        _checks.require_x64("PlaneWaveTurbulence.from_modes")
        k = jnp.asarray(wavevectors, dtype=float)
        e = jnp.asarray(polarisations, dtype=float)
        beta = jnp.asarray(phases, dtype=float)
        b0 = jnp.asarray(regular_field, dtype=float)
        if k.ndim != 2 or k.shape[-1] != 3:
            raise ValueError(f"wavevectors must have shape (N, 3); got {k.shape}")
        if e.shape != k.shape:
            raise ValueError(f"polarisations must have the shape of wavevectors {k.shape}; got {e.shape}")
        if beta.shape != k.shape[:1]:
            raise ValueError(f"phases must have shape ({k.shape[0]},); got {beta.shape}")
        if b0.shape != (3,):
            raise ValueError(f"regular_field must have shape (3,); got {b0.shape}")
        for name, x in (("wavevectors", k), ("polarisations", e), ("phases", beta), ("regular_field", b0)):
            _checks.check_finite(name, x)
        return cls(wavevectors=k, polarisations=e, phases=beta, regular_field=b0)

    @classmethod
    def from_parameters(cls, params: TurbulenceParameters, noise: TurbulenceNoise, b0_direction=(0.0, 0.0, 1.0)):
        """Eq. 10-11 from parameters and noise; differentiable in the parameters."""
        k = mode_wavenumbers(params)
        amp = mode_amplitudes(params)
        a, b = polarisation_basis(noise.directions)
        if noise.gaussian is None:
            pol = amp[:, None] * (a * jnp.cos(noise.alpha)[:, None] + b * jnp.sin(noise.alpha)[:, None])
        else:
            xi, eta = noise.gaussian
            pol = (amp / jnp.sqrt(2.0))[:, None] * (xi[:, None] * a + eta[:, None] * b)
        e_hat = jnp.asarray(b0_direction, dtype=float)
        return cls(
            wavevectors=k[:, None] * noise.directions,
            polarisations=pol,
            phases=noise.beta,
            regular_field=params.b0 * e_hat,
        )

    @classmethod
    def from_keys(
        cls,
        keys: Key[Array, " R"],
        params: TurbulenceParameters,
        b0_direction=(0.0, 0.0, 1.0),
        gaussian_amplitudes: bool = False,
    ) -> "PlaneWaveTurbulence":
        """One realisation per key (keys of shape (R,)), stacked; see :mod:`jaxcr.random`."""
        return jax.vmap(
            lambda k: cls.from_parameters(
                params, TurbulenceNoise.sample(k, params.n_modes, gaussian_amplitudes), b0_direction
            )
        )(keys)

    @classmethod
    def sample(cls, key, params: TurbulenceParameters, realisation: int = 0, b0_direction=(0.0, 0.0, 1.0)):
        """Realisation number ``realisation`` of the field for a seed (int) or PRNG key.

        Realisation i uses :func:`jaxcr.random.realisation_key` (``fold_in(key, i)``): the same
        (seed, i) always gives the same field, in every part of jaxcr, and different i give
        independent fields.
        """
        _checks.require_x64("PlaneWaveTurbulence.sample")
        _checks.check_direction("b0_direction", b0_direction)
        noise = TurbulenceNoise.sample(realisation_key(key, realisation), params.n_modes)
        return cls.from_parameters(params, noise, b0_direction)

    @classmethod
    def sample_ensemble(
        cls, key, params: TurbulenceParameters, n_realisations: int, first: int = 0, b0_direction=(0.0, 0.0, 1.0)
    ):
        """Realisations first..first+n-1 stacked along a leading axis (same fields as :meth:`sample`)."""
        _checks.check_positive_int("n_realisations", n_realisations)
        _checks.check_direction("b0_direction", b0_direction)
        return cls.from_keys(realisation_keys(key, n_realisations, first), params, b0_direction)

    # --- evaluation ---------------------------------------------------------------------------
    @property
    def n_modes(self) -> int:
        return self.wavevectors.shape[-2]

    @property
    def is_ensemble(self) -> bool:
        """True for a stack of realisations (leading batch axis)."""
        return self.wavevectors.ndim == 3

    def resolution_scales(self) -> tuple[float, float] | None:
        """(λ_min = 2π/max|k_n|, |b0| + 3 σ_b) with σ_b² = Σ|E_n|²/2 the mean turbulent |δb|²,
        the largest over the realisations; None for a traced field."""
        k, e, b0 = (_checks.concrete(x) for x in (self.wavevectors, self.polarisations, self.regular_field))
        if k is None or e is None or b0 is None:
            return None
        kmax = float(np.max(np.linalg.norm(k, axis=-1))) if k.size else 0.0
        sigma_b = np.sqrt(np.sum(e**2, axis=(-1, -2)) / 2)
        b_typ = float(np.max(np.linalg.norm(b0, axis=-1) + 3 * sigma_b))
        return (2 * np.pi / kmax if kmax > 0 else float("inf")), b_typ

    def with_precision(self, precision: FieldPrecision | str) -> "PlaneWaveTurbulence":
        """The same field evaluated in float64 or float32 (see the class docstring)."""
        return dataclasses.replace(self, precision=as_option(FieldPrecision, "precision", precision))

    def with_layout(self, layout: ModeSumLayout | str) -> "PlaneWaveTurbulence":
        """The same field with the mode sum computed as a :class:`jaxcr.ModeSumLayout` (or its value)."""
        return dataclasses.replace(self, layout=as_option(ModeSumLayout, "layout", layout))

    def resolved_layout(self) -> ModeSumLayout:
        """What AUTO stands for here: NATIVE on CPU (MATMUL, warned, if it cannot be built), PALLAS
        on GPU (SPLIT, warned, if it fails its first check), SPLIT on TPU; others as they are."""
        if self.layout != ModeSumLayout.AUTO:
            return self.layout
        if jax.default_backend() == "gpu":
            return ModeSumLayout.PALLAS if pallas_kernel.available() else ModeSumLayout.SPLIT
        if jax.default_backend() != "cpu":
            return ModeSumLayout.SPLIT
        if native.available():
            return ModeSumLayout.NATIVE
        native.warn_fallback()
        return ModeSumLayout.MATMUL

    def fused_kernel(self):
        """The kernel module of this field's mode sum (:mod:`jaxcr.native` or :mod:`jaxcr.pallas_kernel`,
        both with ``plane_wave_field`` and ``boris_advance`` taking a :class:`FieldPrecision`), or
        None for the pure-JAX layouts: the one place the backend is chosen."""
        layout = self.resolved_layout()
        if layout == ModeSumLayout.NATIVE:
            return native
        if layout == ModeSumLayout.PALLAS:
            return pallas_kernel
        return None

    def uses_fused_kernel(self) -> bool:
        """True when the mode sum runs in one of jaxcr's kernels (:meth:`fused_kernel`)."""
        return self.fused_kernel() is not None

    def turbulent(self, positions: Float[ArrayLike, "... 3"]) -> Float[Array, "... 3"]:
        """δb(r) = Σ_n E_n cos(k_n·r + β_n) (Eq. 10), in units of B0; positions in r_L."""
        positions = jnp.asarray(positions)
        modes = (self.wavevectors, self.polarisations, self.phases)
        kernel = self.fused_kernel()
        if kernel is not None:
            return kernel.plane_wave_field(positions, *modes, self.precision).astype(positions.dtype)
        return xla_mode_sum(positions, *modes, self.precision, self.resolved_layout())

    def __call__(self, positions: Float[ArrayLike, "... 3"]) -> Float[Array, "... 3"]:
        """Total field b(r) = b0 ê + δb(r) in units of B0; positions in r_L."""
        return self.regular_field + self.turbulent(positions)
