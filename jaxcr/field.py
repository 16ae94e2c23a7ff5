"""The abstract magnetic field that the integrators accept, a uniform field, and field options.

Internal units (:mod:`jaxcr.units`): positions in Larmor radii r_L, fields in units of B0.
:class:`jaxcr.PlaneWaveTurbulence` (paper Eq. 10-11) is the turbulent field; :class:`UniformField`
is the regular field alone (a helix of radius r_L and period 2π/Ω, the analytic reference of
the tests). Any subclass of :class:`AbstractField` can be backtracked.
"""

from __future__ import annotations

import abc
import enum

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from . import _checks

__all__ = ["AbstractField", "UniformField", "FieldPrecision", "ModeSumLayout", "as_option", "check_field"]


class FieldPrecision(enum.StrEnum):
    """How accurately the plane-wave mode sum is evaluated (:meth:`PlaneWaveTurbulence.with_precision`).

    The phases k_n·r + β_n are always formed and reduced in float64. ``FLOAT64`` (full): cos by
    a 9-term polynomial and the sum in float64, error ~1e-13 of the rms field. ``FAST``: a 7-term
    polynomial in float64, error ~1e-9 of the rms field (measured 1.3e-9 B0 for the paper's
    field, below the 4e-8 B0 of the established C++ code's SIMD cosine), ~10 % faster on CPU.
    ``FLOAT32``: cos and the sum in float32, error ~5e-7 (faster on GPUs).
    """

    FLOAT64 = "float64"
    FAST = "fast"
    FLOAT32 = "float32"


class ModeSumLayout(enum.StrEnum):
    """How the mode sum is computed (:meth:`PlaneWaveTurbulence.with_layout`); same numbers to
    rounding. NATIVE is jaxcr's C++ kernel (:mod:`jaxcr.native`, CPU only): one pass over the
    modes per particle, vectorised and threaded, 3.7x the XLA layouts on a 2-core AVX-512 CPU.
    PALLAS is jaxcr's fused GPU kernel (:mod:`jaxcr.pallas_kernel`): phases, cosines and sums in
    registers, no (particles × modes) array in memory; on other backends it runs in Pallas'
    interpreter (for tests: correct, and slow). MATMUL forms the phases k_n·r and the sum
    Σ E_n cos(·) as two matrix products (it keeps 0.1.0's CPU results bit for bit); SPLIT forms
    phases and cos as one elementwise kernel and the sum as a product; FUSED writes the sum as a
    reduction too. AUTO takes NATIVE on CPU (MATMUL, with a warning, where the kernel cannot be
    built) and PALLAS on GPU (SPLIT, with a warning, where its first compiled result does not
    match the exact sum), decided when traced (H200, N = 256, 122 880 particles: SPLIT 4.3×10⁸
    Boris particle-steps/s, MATMUL 3.2×10⁸, FUSED 3.0×10⁸; PALLAS not yet measured)."""

    AUTO = "auto"
    NATIVE = "native"
    MATMUL = "matmul"
    SPLIT = "split"
    FUSED = "fused"
    PALLAS = "pallas"


def as_option(enum_type, name: str, value):
    """``value`` as a member of ``enum_type`` (its member or its value string), else a clear error."""
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum_type)
        raise ValueError(f"{name} must be a {enum_type.__name__} or one of {allowed}; got {value!r}") from None


class AbstractField(eqx.Module):
    """A static magnetic field b(r) in units of B0, positions in r_L (internal units).

    Subclasses implement :meth:`__call__` for positions of shape (..., 3). A stack of
    realisations is the same Module with a leading batch axis on its arrays; ``is_ensemble``
    and ``n_realisations`` say whether and how many. :func:`jaxcr.track` accepts any field.
    """

    @abc.abstractmethod
    def __call__(self, positions: Float[ArrayLike, "... 3"]) -> Float[Array, "... 3"]:
        """Total field b(r) in units of B0."""

    @property
    @abc.abstractmethod
    def is_ensemble(self) -> bool:
        """True for a stack of realisations (leading batch axis)."""

    @property
    def n_realisations(self) -> int:
        """Number of stacked realisations (1 for a single field)."""
        leaves = jax.tree_util.tree_leaves(self)
        return int(leaves[0].shape[0]) if self.is_ensemble and leaves else 1

    def realisation(self, i: int):
        """One realisation out of a stack."""
        if not self.is_ensemble:
            raise ValueError("realisation(i) needs a stack of fields (from sample_ensemble)")
        return jax.tree_util.tree_map(lambda x: x[i], self)

    def resolution_scales(self) -> tuple[float, float] | None:
        """(smallest wavelength λ_min in r_L, typical strongest |b| in B0) that a step must resolve,
        or None when unknown (a traced field, or a field without such scales)."""
        return None

    def check_finite(self) -> None:
        """Raise a ``ValueError`` naming the first array of the field with a non-finite value."""
        for path, leaf in jax.tree_util.tree_leaves_with_path(self):
            _checks.check_finite(f"field{jax.tree_util.keystr(path)}", leaf)


class UniformField(AbstractField):
    """b(r) = ``regular_field`` everywhere (units of B0): gyration on a helix of radius r_L."""

    regular_field: Float[Array, "*R 3"]

    def __init__(self, regular_field=(0.0, 0.0, 1.0)):
        b = jnp.asarray(regular_field, dtype=float)
        if b.ndim not in (1, 2) or b.shape[-1] != 3:
            raise ValueError(f"regular_field must have shape (3,) or (R, 3); got {b.shape}")
        _checks.check_finite("regular_field", b)
        self.regular_field = b

    @property
    def is_ensemble(self) -> bool:
        return self.regular_field.ndim == 2

    def resolution_scales(self) -> tuple[float, float] | None:
        b = _checks.concrete(self.regular_field)
        return None if b is None else (float("inf"), float(np.max(np.linalg.norm(b, axis=-1))))

    def __call__(self, positions: Float[ArrayLike, "... 3"]) -> Float[Array, "... 3"]:
        r = jnp.asarray(positions)
        return jnp.broadcast_to(self.regular_field, r.shape).astype(r.dtype)


def check_field(field) -> None:
    """Raise unless ``field`` is an :class:`AbstractField` with finite arrays (concrete values)."""
    if not isinstance(field, AbstractField):
        raise TypeError(
            f"field must be an AbstractField (e.g. PlaneWaveTurbulence, UniformField); got {type(field).__name__}"
        )
    field.check_finite()
