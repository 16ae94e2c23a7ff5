"""The abstract magnetic field that the integrators accept, a uniform field, and field options.

Internal units (:mod:`jaxcr.units`): positions in Larmor radii r_L, fields in units of B0.
:class:`jaxcr.PlaneWaveTurbulence` (paper Eq. 10-11) is the turbulent field; :class:`UniformField`
is the regular field alone (a helix of radius r_L and period 2π/Ω, the analytic reference of
the tests). Any subclass of :class:`AbstractField` can be backtracked.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from . import _checks
from .options import FieldPrecision, ModeSumLayout, as_option

__all__ = ["AbstractField", "UniformField", "FieldPrecision", "ModeSumLayout", "as_option", "check_field"]


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
        _checks.require_x64("UniformField")
        r = jnp.asarray(positions)
        return jnp.broadcast_to(self.regular_field, r.shape).astype(r.dtype)


def check_field(field) -> None:
    """Raise unless ``field`` is an :class:`AbstractField` with finite arrays (concrete values)."""
    if not isinstance(field, AbstractField):
        raise TypeError(
            f"field must be an AbstractField (e.g. PlaneWaveTurbulence, UniformField); got {type(field).__name__}"
        )
    field.check_finite()
