"""The fused GPU kernel for the plane-wave mode sum (paper Eq. 10) and for Boris steps, in Pallas.

    δb(r) = Σ_n E_n cos(k_n·r + β_n)

XLA writes this sum as separate kernels with a (particles × modes) array in GPU memory between
them. This kernel (Pallas, Triton backend) gives each program a block of particles and walks
the modes in blocks: the phases, the cosines and the three sums stay in registers, and only the
positions go in and the field comes out. :func:`boris_advance` goes further and runs many Boris
steps per call, the field evaluated inside the step loop (the GPU twin of
:func:`jaxcr.native.boris_advance`).

Wave vectors and phases are passed in half-turns (k/π, β/π), so the phase t = k·r/π + β/π is
reduced exactly in float64: y = t − 2⌊t/2 + 1/2⌋ ∈ [−1, 1). Then cos(πy) = 2cos²(πy/2) − 1 with
the Taylor polynomial of :mod:`jaxcr._fastmath` for cos(πy/2), whose accuracy levels
(:class:`jaxcr.FieldPrecision`) it shares: ``FLOAT64`` (9 terms, ~1e-13 of the rms field),
``FAST`` (7 terms, ~1e-9), ``FLOAT32`` (y rounded to float32 after the float64 reduction, the
polynomial and the three sums in float32, ~5e-7). Positions, momenta and phases stay float64.

:class:`jaxcr.PlaneWaveTurbulence` uses it on GPU by default (``ModeSumLayout.AUTO``) once a
first call has compiled it and matched the exact sum there (:func:`available`); elsewhere
the kernel runs in Pallas' interpreter, which is how the tests check it on CPU. It works under
``jax.vmap`` and has the derivatives of :func:`jaxcr._fastmath.differentiable_mode_sum`
(∂b/∂r by a second kernel); the Boris steps have none, like the native ones.

Pallas' Triton backend is marked deprecated from jax 0.11 (in favour of Mosaic GPU, whose
memory copies do not take float64); should a jax remove it, the first-use check fails and
``AUTO`` falls back to the pure-JAX sum with a warning.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jaxtyping import Array, ArrayLike, Float

from ._fastmath import (
    COS_COEFFS,
    COS_COEFFS_F32,
    COS_COEFFS_FAST,
    broadcast_shape,
    differentiable_mode_sum,
    fused_steps_without_derivative,
    half_angle_cos,
)
from .field import FieldPrecision, as_option

try:
    from jax.experimental.pallas import triton as pallas_triton
except ImportError:  # a jax without Pallas' Triton backend (deprecated from jax 0.11)
    pallas_triton = None  # type: ignore[assignment]

__all__ = ["Tiling", "available", "unavailable_reason", "plane_wave_field", "boris_advance", "runs_compiled"]

_state: dict = {}


@dataclasses.dataclass(frozen=True)
class Tiling:
    """How the work is cut for the GPU: ``block_particles`` particles per program, modes taken
    ``block_modes`` at a time (a block_particles × block_modes tile of phases and partial sums in
    registers, spread over the program's threads), ``num_warps`` warps per program. Block sizes
    are powers of two (Triton).

    The default, 128 × 8 with 4 warps (8 tile elements per thread), is the largest tile that
    compiles without register spills for both the field and the Boris kernels, at float64 and
    float32: ptxas (CUDA 13.4, sm_90a) on the kernels' Triton code reported 158 and 168 registers
    per thread and no spills, where 128 × 32 spilled 1-5 kB per thread (measured on code, not on
    a card: see docs/performance.md). The Jacobian kernel takes half the modes per block."""

    block_particles: int = 128
    block_modes: int = 8
    num_warps: int = 4

    def __post_init__(self):
        for name in ("block_particles", "block_modes", "num_warps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value & (value - 1):
                raise ValueError(f"Tiling.{name} must be a power of two ≥ 1; got {value!r}")


def runs_compiled() -> bool:
    """True where the kernel is compiled for the device (a GPU, through Triton); False where it
    runs in Pallas' interpreter (any other backend: correct, and slow)."""
    return jax.default_backend() == "gpu"


# --- the kernels -----------------------------------------------------------------------------
def _reduced_half_turns(t):
    """t − 2⌊t/2 + 1/2⌋ ∈ [−1, 1): exact in float64 (an even integer subtracted)."""
    return t - 2.0 * jnp.floor(0.5 * t + 0.5)


def _cos_half_turns(t, precision: FieldPrecision):
    """cos(π t) for phases t in half-turns, by the polynomial of the accuracy level."""
    y = _reduced_half_turns(t)
    if precision == FieldPrecision.FLOAT32:
        s = y.astype(jnp.float32) * np.float32(math.pi / 2)
        return half_angle_cos(s, tuple(np.float32(a) for a in COS_COEFFS_F32))
    coeffs = COS_COEFFS_FAST if precision == FieldPrecision.FAST else COS_COEFFS
    return half_angle_cos(y * (math.pi / 2), coeffs)


def _mode_sums(position, modes, n_blocks: int, precision: FieldPrecision, tiling: Tiling, jacobian: bool = False):
    """Σ_n E_n cos(π t_n) (three sums) for a block of particles, the modes walked in blocks;
    with ``jacobian`` also the nine sums Σ_n E_ni k_nj sin(π t_n) (k in half-turns).

    The partial sums are kept as (particles × block_modes) tiles and reduced over the modes once,
    after the loop: a reduction per block would exchange values between lanes (shuffles) in
    every iteration, about as many instructions as the arithmetic itself."""
    x, y, z = position
    width = tiling.block_modes

    def body(j, tiles):
        kx, ky, kz, ex, ey, ez, beta = (ref[pl.ds(j * width, width)] for ref in modes)
        t = x[:, None] * kx + y[:, None] * ky + z[:, None] * kz + beta  # (particles, modes), float64
        c = _cos_half_turns(t, precision)
        out = [s + c * e for s, e in zip(tiles[:3], (ex, ey, ez))]
        if jacobian:
            sin = jnp.sin(math.pi * _reduced_half_turns(t))
            out += [s + sin * (e * k) for s, (e, k) in zip(tiles[3:], _pairs(ex, ey, ez, kx, ky, kz))]
        return tuple(out)

    dtype = jnp.float32 if precision == FieldPrecision.FLOAT32 else jnp.float64
    zero = jnp.zeros((x.shape[0], width), dtype)
    tiles = jax.lax.fori_loop(0, n_blocks, body, (zero,) * (12 if jacobian else 3))
    return [jnp.sum(tile, axis=1) for tile in tiles]


def _pairs(ex, ey, ez, kx, ky, kz):
    return [(e, k) for e in (ex, ey, ez) for k in (kx, ky, kz)]


def _field_kernel(*refs, n_blocks, precision, tiling, jacobian):
    position, modes, outputs = refs[:3], refs[3:10], refs[10:]
    sums = _mode_sums([r[...] for r in position], modes, n_blocks, precision, tiling, jacobian)
    for out, value in zip(outputs[:3], sums[:3]):
        out[...] = value.astype(out.dtype)
    for out, value in zip(outputs[3:], sums[3:]):  # ∂b_i/∂r_j = −π Σ_n E_ni (k_nj/π) sin(π t_n)
        out[...] = -math.pi * value


def _cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _boris_kernel(*refs, n_blocks, precision, tiling):
    state_refs, h_ref, steps_ref, modes, b0_ref, outputs = refs[:6], refs[6], refs[7], refs[8:15], refs[15], refs[16:]
    h, steps = h_ref[...], steps_ref[...]
    b0 = (b0_ref[0], b0_ref[1], b0_ref[2])

    def step(i, state):  # jaxcr.dynamics.boris_step: drift, kick (rotation), drift
        r, u = state[:3], state[3:]
        r_half = [ri + 0.5 * h * ui for ri, ui in zip(r, u)]
        db = _mode_sums(r_half, modes, n_blocks, precision, tiling)
        t_vec = [0.5 * h * (b + d.astype(jnp.float64)) for b, d in zip(b0, db)]
        u_prime = [ui + ci for ui, ci in zip(u, _cross(u, t_vec))]
        scale = 2.0 / (1.0 + t_vec[0] ** 2 + t_vec[1] ** 2 + t_vec[2] ** 2)
        u_new = [ui + scale * ci for ui, ci in zip(u, _cross(u_prime, t_vec))]
        r_new = [ri + 0.5 * h * ui for ri, ui in zip(r_half, u_new)]
        active = i < steps  # particles with fewer steps keep their state
        return tuple(jnp.where(active, new, old) for new, old in zip((*r_new, *u_new), state))

    state = tuple(ref[...] for ref in state_refs)
    state = jax.lax.fori_loop(0, jnp.max(steps), step, state)
    for out, value in zip(outputs, state):
        out[...] = value


# --- calls -----------------------------------------------------------------------------------
def _padded(x, size):
    return jnp.pad(x, [(0, size - x.shape[0])] + [(0, 0)] * (x.ndim - 1))


def _mode_columns(wavevectors, polarisations, phases, precision: FieldPrecision, tiling: Tiling):
    """k/π (3 columns), E (3 columns, float32 at that level), β/π, padded with zero modes."""
    n = wavevectors.shape[0]
    size = -(-max(n, 1) // tiling.block_modes) * tiling.block_modes
    e_dtype = jnp.float32 if precision == FieldPrecision.FLOAT32 else jnp.float64
    k, e, beta = _padded(wavevectors / math.pi, size), _padded(polarisations, size), _padded(phases / math.pi, size)
    return [k[:, 0], k[:, 1], k[:, 2], *(e[:, i].astype(e_dtype) for i in range(3)), beta], size // tiling.block_modes


def _particle_columns(points, tiling: Tiling):
    size = -(-max(points.shape[0], 1) // tiling.block_particles) * tiling.block_particles
    return [c for c in _padded(points, size).T], size


def _call(kernel, n_inputs_by_particle, inputs, n_outputs, size, tiling, interpret):
    by_particle = pl.BlockSpec((tiling.block_particles,), lambda i: (i,))
    whole = [pl.BlockSpec(x.shape, lambda i: (0,)) for x in inputs[n_inputs_by_particle:]]
    return pl.pallas_call(
        kernel,
        out_shape=[jax.ShapeDtypeStruct((size,), jnp.float64)] * n_outputs,
        grid=(size // tiling.block_particles,),
        in_specs=[by_particle] * n_inputs_by_particle + whole,
        out_specs=[by_particle] * n_outputs,
        compiler_params=None
        if pallas_triton is None
        else pallas_triton.CompilerParams(num_warps=tiling.num_warps, num_stages=1),
        interpret=interpret,
        name="jaxcr_plane_wave_sum",
    )(*inputs)


def _over_realisations(fn, positions, *mode_arrays):
    """Apply ``fn(points (P, 3), k, E, β)`` over the realisation axes (broadcast) of the modes."""
    n_batch = mode_arrays[0].ndim - 2
    if n_batch == 0:
        return fn(positions, *mode_arrays)
    shape = broadcast_shape(positions, mode_arrays[0])
    lead = shape[:n_batch]
    positions = jnp.broadcast_to(positions, (*lead, *positions.shape[n_batch:]))
    modes = [jnp.broadcast_to(m, (*lead, *m.shape[n_batch:])) for m in mode_arrays]
    for _ in range(n_batch):
        fn = jax.vmap(fn)
    return fn(positions, *modes)


def _field_call(precision: FieldPrecision, tiling: Tiling, interpret: bool, jacobian: bool):
    def one(positions, wavevectors, polarisations, phases):
        points = positions.reshape(-1, 3)
        columns, size = _particle_columns(points, tiling)
        modes, n_blocks = _mode_columns(wavevectors, polarisations, phases, precision, tiling)
        kernel = functools.partial(
            _field_kernel, n_blocks=n_blocks, precision=precision, tiling=tiling, jacobian=jacobian
        )
        out = _call(kernel, 3, columns + modes, 12 if jacobian else 3, size, tiling, interpret)
        n = points.shape[0]
        b = jnp.stack(out[:3], axis=-1)[:n].reshape(positions.shape)
        if not jacobian:
            return b
        return b, jnp.stack(out[3:], axis=-1)[:n].reshape((*positions.shape, 3))

    return lambda r, k, e, beta: _over_realisations(one, r, k, e, beta)


@functools.cache
def _field_function(precision: FieldPrecision, tiling: Tiling, interpret: bool):
    return differentiable_mode_sum(
        _field_call(precision, tiling, interpret, jacobian=False),
        _field_call(FieldPrecision.FLOAT64, _jacobian_tiling(tiling), interpret, jacobian=True),
    )


def _jacobian_tiling(tiling: Tiling) -> Tiling:
    """The Jacobian kernel keeps twelve partial-sum tiles instead of three: half the modes per
    block keeps it in registers (no spills at the default tiling, 512 bytes at the full width)."""
    return dataclasses.replace(tiling, block_modes=max(1, tiling.block_modes // 2))


def _interpret(interpret: bool | None) -> bool:
    return not runs_compiled() if interpret is None else bool(interpret)


def plane_wave_field(
    positions: Float[ArrayLike, "... 3"],
    wavevectors: Float[ArrayLike, "*R N 3"],
    polarisations: Float[ArrayLike, "*R N 3"],
    phases: Float[ArrayLike, "*R N"],
    precision: FieldPrecision | str = FieldPrecision.FLOAT64,
    tiling: Tiling = Tiling(),
    interpret: bool | None = None,
) -> Float[Array, "... 3"]:
    """δb(r) = Σ_n E_n cos(k_n·r + β_n) by the fused kernel (units of the polarisations).

    Args:
        positions: r in r_L, shape (..., 3); leading axes align with the field's realisation axes.
        wavevectors: k_n in 1/r_L; polarisations: E_n; phases: β_n in radians.
        precision: a :class:`jaxcr.FieldPrecision` (or its value).
        tiling: block sizes and warps (:class:`Tiling`).
        interpret: run in Pallas' interpreter; None: wherever the kernel cannot be compiled.
    """
    precision = as_option(FieldPrecision, "precision", precision)
    r = jnp.asarray(positions, dtype=jnp.float64)
    k, e, beta = (jnp.asarray(x, dtype=jnp.float64) for x in (wavevectors, polarisations, phases))
    return _field_function(precision, tiling, _interpret(interpret))(r, k, e, beta)


@functools.cache
def _boris_function(precision: FieldPrecision, tiling: Tiling, interpret: bool):
    def one(r, u, h, steps, k, e, beta, b0):
        shape = r.shape
        points, momenta = r.reshape(-1, 3), u.reshape(-1, 3)
        columns, size = _particle_columns(points, tiling)
        columns += _particle_columns(momenta, tiling)[0]
        per_particle = [_padded(jnp.broadcast_to(x, shape[:-1]).reshape(-1), size) for x in (h, steps)]
        modes, n_blocks = _mode_columns(k, e, beta, precision, tiling)
        kernel = functools.partial(_boris_kernel, n_blocks=n_blocks, precision=precision, tiling=tiling)
        out = _call(kernel, 8, columns + per_particle + modes + [b0], 6, size, tiling, interpret)
        n = points.shape[0]
        return tuple(jnp.stack(c, axis=-1)[:n].reshape(shape) for c in (out[:3], out[3:]))

    return fused_steps_without_derivative(one, "Pallas")


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
    tiling: Tiling = Tiling(),
    interpret: bool | None = None,
) -> tuple[Float[Array, "... 3"], Float[Array, "... 3"]]:
    """``n_steps`` Boris steps of size ``step`` (1/Ω; both per particle or shared) in
    b = b0 + Σ_n E_n cos(k_n·r + β_n), all inside the kernel (the step of
    :func:`jaxcr.dynamics.boris_step`, equal to rounding), positions in r_L. Works under
    ``jax.vmap`` (a batch of fields is a batch of mode arrays); it has no derivative.
    """
    precision = as_option(FieldPrecision, "precision", precision)
    f64 = lambda x: jnp.asarray(x, dtype=jnp.float64)
    r, u = f64(positions), f64(momenta)
    s = f64(charge_sign)  # du/dt = u × (s b): the sign scales the field
    k, e, beta = f64(wavevectors), s * f64(polarisations), f64(phases)
    b0 = jnp.concatenate([s * f64(regular_field), jnp.zeros(1)])  # a power-of-two block for Triton
    fn = _boris_function(precision, tiling, _interpret(interpret))
    return fn(r, u, f64(step), jnp.asarray(n_steps, dtype=jnp.int32), k, e, beta, b0)


# --- availability ----------------------------------------------------------------------------
def _probe() -> str | None:
    """Compile the kernel on this GPU and compare it with the exact sum; None when it matches.
    (Lowered and compiled ahead of time, so it also runs while a caller is being traced.)"""
    rng = np.random.default_rng(0)
    k, e = rng.normal(size=(40, 3)), rng.normal(scale=0.1, size=(40, 3))
    beta, r = rng.uniform(0, 2 * np.pi, 40), rng.uniform(-100, 100, size=(300, 3))
    compiled = jax.jit(lambda *args: plane_wave_field(*args)).lower(r, k, e, beta).compile()
    got = np.asarray(compiled(r, k, e, beta))
    error = float(np.max(np.abs(got - np.cos(r @ k.T + beta) @ e)))
    return None if error < 1e-10 else f"its first result was {error:.2g} off the exact sum"


def unavailable_reason() -> str | None:
    """Why :class:`jaxcr.PlaneWaveTurbulence` does not use the kernel here (None when it does)."""
    if "reason" not in _state:
        if os.environ.get("JAXCR_PALLAS", "1") == "0":
            _state["reason"] = "JAXCR_PALLAS=0"
        elif not runs_compiled():
            _state["reason"] = f"it is compiled for GPUs only; the backend is {jax.default_backend()}"
        else:  # a GPU: the kernel is expected, so say why it is not used
            if pallas_triton is None:
                _state["reason"] = f"jax {jax.__version__} has no Pallas Triton backend"
            else:
                try:
                    _state["reason"] = _probe()
                except Exception as err:  # any compile failure means: use the fallback
                    _state["reason"] = f"it failed to compile here ({type(err).__name__}: {str(err)[:300]})"
            if _state["reason"] is not None:
                warnings.warn(
                    f"jaxcr: the Pallas mode-sum kernel is unavailable ({_state['reason']}); using the pure-JAX sum "
                    "(ModeSumLayout.SPLIT). Set JAXCR_PALLAS=0 to skip it without this warning.",
                    RuntimeWarning,
                    stacklevel=3,
                )
    return _state["reason"]


def available() -> bool:
    """True where the kernel is compiled for the GPU and its first result matched the exact sum
    (checked once per process; ``JAXCR_PALLAS=0`` turns it off)."""
    return unavailable_reason() is None
