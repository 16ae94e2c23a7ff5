"""The native CPU kernel for the plane-wave mode sum (paper Eq. 10), called from jitted code.

    δb(r) = Σ_n E_n cos(k_n·r + β_n)

XLA writes this sum as separate kernels with a (particles × modes) array in memory between
them; the native kernel (C++, ``jax.ffi``) makes one pass over the modes per particle with the
phase, the reduced cosine and the three sums in vector registers, vectorised for the CPU it runs
on (x86-64: SSE2, AVX2/FMA or AVX-512, chosen at load time) and threaded over particles on
XLA's intra-op thread pool. It is what :class:`jaxcr.PlaneWaveTurbulence` uses on CPU by default
(``ModeSumLayout.AUTO``); the pure-JAX sum stays for GPU/TPU and as the fallback.

Accuracy levels (:class:`jaxcr.FieldPrecision`), the phase always formed and reduced in float64:
``FLOAT64`` (full: the polynomial of :func:`jaxcr._fastmath.fast_cos`, error ~1e-13 of the rms
field), ``FAST`` (a shorter polynomial, ~1e-9 per mode, a few 1e-9 B0 for the paper's field),
``FLOAT32`` (the polynomial and the sum in float32, ~1e-7 of the rms field).

It works under ``jax.vmap`` (batch axes of positions and of the mode arrays broadcast) and
``jax.jvp``/``jax.grad``: the derivative with respect to positions is the Jacobian
∂b/∂r = −Σ_n E_n k_nᵀ sin(k_n·r + β_n), computed by a second native kernel; the derivative with
respect to the modes (for pathwise gradients in σ², λ_c, r_L) is written in jax.numpy.
Second derivatives are not defined.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._fastmath import broadcast_shape as _broadcast_shape
from .._fastmath import differentiable_mode_sum, fused_steps_without_derivative, reference_field
from ..field import FieldPrecision, as_option
from .build import NativeUnavailable, load_library, switched_off

__all__ = [
    "available",
    "unavailable_reason",
    "instruction_set",
    "plane_wave_field",
    "reference_field",
    "boris_advance",
    "NativeUnavailable",
    "LEVELS",
]

LEVELS = {FieldPrecision.FLOAT64: 0, FieldPrecision.FAST: 1, FieldPrecision.FLOAT32: 2}  # -> the kernel's level
_PI = np.pi  # the kernel takes wave vectors and phases in half-turns (k/π, β/π)
_state: dict = {}


def _library():
    if "lib" not in _state and "error" not in _state:
        try:
            _state["lib"] = load_library()
        except NativeUnavailable as err:
            _state["error"] = str(err)
    return _state.get("lib")


def available() -> bool:
    """True when the native kernel is built and loaded (builds it on the first call)."""
    return _library() is not None


def unavailable_reason() -> str | None:
    """Why the native kernel is not available (None when it is)."""
    _library()
    return _state.get("error")


def instruction_set() -> str | None:
    """The instruction-set variant in use ("x86-64-v4", "x86-64-v3", "generic"); None if unavailable."""
    lib = _library()
    return None if lib is None else lib.jaxcr_native_variant().decode()


def require() -> None:
    """Raise :class:`NativeUnavailable` with the reason unless the native kernel can be used."""
    if not available():
        raise NativeUnavailable(
            f"the native CPU mode-sum kernel is unavailable: {unavailable_reason()}. "
            "Use ModeSumLayout.AUTO (falls back to the pure-JAX sum) or MATMUL."
        )
    if jax.default_backend() != "cpu":
        raise NativeUnavailable(f"the native mode-sum kernel runs on CPU only; the backend is {jax.default_backend()}")


def warn_fallback() -> None:
    """Warn once that the pure-JAX sum is used because the native kernel is unavailable."""
    if not _state.get("warned") and not switched_off():
        _state["warned"] = True
        warnings.warn(
            f"jaxcr: the native CPU mode-sum kernel is unavailable ({unavailable_reason()}); using the pure-JAX "
            "sum, about 2-3x slower. Set JAXCR_NATIVE=0 to use it without this warning.",
            RuntimeWarning,
            stacklevel=3,
        )


def _ffi_field_call(positions, wavevectors, polarisations, phases, level):
    shape = _broadcast_shape(positions, wavevectors)
    call = jax.ffi.ffi_call(
        "jaxcr_plane_wave_field", jax.ShapeDtypeStruct(shape, jnp.float64), vmap_method="expand_dims"
    )
    return call(positions, wavevectors / _PI, polarisations, phases / _PI, level=np.int32(level))


def _ffi_jacobian_call(positions, wavevectors, polarisations, phases):
    shape = _broadcast_shape(positions, wavevectors)
    call = jax.ffi.ffi_call(
        "jaxcr_plane_wave_jacobian",
        (jax.ShapeDtypeStruct(shape, jnp.float64), jax.ShapeDtypeStruct((*shape, 3), jnp.float64)),
        vmap_method="expand_dims",
    )
    return call(positions, wavevectors / _PI, polarisations, phases / _PI)


def _batched(call):
    """``call`` with a vmap rule: a batch of positions against unbatched modes is one call on
    all the positions (the kernel's fastest form: consecutive particles, one mode table); when
    the modes are batched too, the batch axis leads every operand (size 1 where unbatched)."""

    @jax.custom_batching.custom_vmap
    def batched(positions, wavevectors, polarisations, phases):
        return call(positions, wavevectors, polarisations, phases)

    @batched.def_vmap
    def rule(axis_size, in_batched, positions, wavevectors, polarisations, phases):
        args = [positions, wavevectors, polarisations, phases]
        if not any(in_batched[1:]) and wavevectors.ndim == 2:  # one mode table: positions (B, ..., 3)
            out = batched(*args)
        else:
            args = [x if b else jnp.expand_dims(x, 0) for x, b in zip(args, in_batched)]
            out = batched(*args)
        return out, jax.tree_util.tree_map(lambda _: any(in_batched), out)

    return batched


@functools.cache
def _field_call(level: int):
    return _batched(lambda r, k, e, beta: _ffi_field_call(r, k, e, beta, level))


_jacobian_call = _batched(_ffi_jacobian_call)


@functools.cache
def _field_function(level: int):
    return differentiable_mode_sum(_field_call(level), _jacobian_call)


def _ffi_boris_call(r, u, h, steps, k, e, beta, b0, level):
    call = jax.ffi.ffi_call(
        "jaxcr_boris",
        (jax.ShapeDtypeStruct(r.shape, jnp.float64), jax.ShapeDtypeStruct(u.shape, jnp.float64)),
        vmap_method="expand_dims",
    )
    h = jnp.broadcast_to(h, r.shape[:-1]).astype(jnp.float64)
    steps = jnp.broadcast_to(steps, r.shape[:-1]).astype(jnp.int64)
    return call(r, u, h, steps, k / _PI, e, beta / _PI, b0, level=np.int32(level))


@functools.cache
def _boris_function(level: int):
    @jax.custom_batching.custom_vmap
    def boris(r, u, h, steps, k, e, beta, b0):
        return _ffi_boris_call(r, u, h, steps, k, e, beta, b0, level)

    @boris.def_vmap
    def rule(axis_size, in_batched, r, u, h, steps, k, e, beta, b0):
        state, modes = [r, u, h, steps], [k, e, beta, b0]
        if not any(in_batched[4:]) and k.ndim == 2:  # one field: the batch is more particles
            state = [x if b else jnp.broadcast_to(x, (axis_size, *x.shape)) for x, b in zip(state, in_batched[:4])]
            state[2:] = [jnp.broadcast_to(x, state[0].shape[:-1]) for x in state[2:]]
            return boris(*state, *modes), (True, True)
        state = [x if b else jnp.broadcast_to(x, (axis_size, *x.shape)) for x, b in zip(state, in_batched[:4])]
        state[2:] = [jnp.broadcast_to(x, state[0].shape[:-1]) for x in state[2:]]
        modes = [x if b else jnp.expand_dims(x, 0) for x, b in zip(modes, in_batched[4:])]
        return boris(*state, *modes), (True, True)

    return fused_steps_without_derivative(boris, "native")


def boris_advance(
    positions: Float[ArrayLike, "... 3"],
    momenta: Float[ArrayLike, "... 3"],
    step: Float[ArrayLike, "..."],
    n_steps: ArrayLike,
    wavevectors: Float[ArrayLike, "N 3"],
    polarisations: Float[ArrayLike, "N 3"],
    phases: Float[ArrayLike, " N"],
    regular_field: Float[ArrayLike, "3"],
    charge_sign: Float[ArrayLike, ""] = 1.0,
    precision: FieldPrecision | str = FieldPrecision.FLOAT64,
) -> tuple[Float[Array, "... 3"], Float[Array, "... 3"]]:
    """``n_steps`` Boris steps of size ``step`` (1/Ω) in b = b0 + Σ_n E_n cos(k_n·r + β_n), all in
    the native kernel (the step of :func:`jaxcr.dynamics.boris_step`, equal to rounding): one call
    advances every particle by many steps, threaded over particles, without returning to XLA
    between steps. Works under ``jax.vmap``; it has no derivative (use the per-step solver).
    """
    require()
    level: FieldPrecision = as_option(FieldPrecision, "precision", precision)
    f64 = lambda x: jnp.asarray(x, dtype=jnp.float64)
    r, u = f64(positions), f64(momenta)
    fn = _boris_function(LEVELS[level])
    s = f64(charge_sign)  # du/dt = u × (s b): the sign scales the field
    return fn(
        r,
        u,
        f64(step),
        jnp.asarray(n_steps, dtype=jnp.int64),
        f64(wavevectors),
        s * f64(polarisations),
        f64(phases),
        s * f64(regular_field),
    )


def plane_wave_field(
    positions: Float[ArrayLike, "... 3"],
    wavevectors: Float[ArrayLike, "*R N 3"],
    polarisations: Float[ArrayLike, "*R N 3"],
    phases: Float[ArrayLike, "*R N"],
    precision: FieldPrecision | str = FieldPrecision.FLOAT64,
) -> Float[Array, "... 3"]:
    """δb(r) = Σ_n E_n cos(k_n·r + β_n) by the native kernel (units of the polarisations).

    Args:
        positions: r in r_L, shape (..., 3); leading axes align with the field's realisation axes.
        wavevectors: k_n in 1/r_L; polarisations: E_n; phases: β_n in radians.
        precision: a :class:`jaxcr.FieldPrecision` (or its value: "float64", "fast", "float32").
    """
    require()
    level: FieldPrecision = as_option(FieldPrecision, "precision", precision)
    r = jnp.asarray(positions, dtype=jnp.float64)
    k, e, beta = (jnp.asarray(x, dtype=jnp.float64) for x in (wavevectors, polarisations, phases))
    return _field_function(LEVELS[level])(r, k, e, beta)
