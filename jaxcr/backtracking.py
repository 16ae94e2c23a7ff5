"""Tracking and backtracking cosmic rays through a field, for every particle and realisation.

Backtracking from t = 0 to t = −T integrates the time-reversed system. With τ = −t and u = −p̂
this is the forward motion of the antiparticle (charge −s) launched outward along u(0) = n̂:
dr/dτ = u, du/dτ = −s u × b(r). jaxcr integrates that and reports r(−T) and p̂(−T) = −u(T)
(conventions in :mod:`jaxcr.dynamics`).

Solvers are objects, as in diffrax: :class:`jaxcr.Boris` (fixed step ``dt``, second order,
|p̂| conserved to rounding; its steps end exactly on the save times) or any diffrax solver
(``diffrax.Tsit5()``, ``diffrax.Dopri8()``, …) with a step-size controller (default
``diffrax.PIDController(rtol=1e-8, atol=1e-10)``). Only the requested save times are stored, so
memory does not depend on the number of steps. Particles are vmapped; a stack of field
realisations is vmapped over too; ``devices`` shards the particles with ``jax.shard_map``.

A non-finite position or momentum raises, also inside ``jax.jit`` and ``jax.grad``
(``equinox.error_if``), instead of flowing silently into maps and spectra.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from . import _checks
from .dynamics import Boris, LorentzForce, SaveAlignedSteps, check_step_resolves, default_step, steps_per_interval
from .field import AbstractField, check_field

__all__ = ["Trajectories", "track", "backtrack", "continue_backtrack"]

ADAPTIVE_MAX_STEPS = 10_000_000
NON_FINITE_ORBIT = (
    "backtracking produced a non-finite position or momentum: the field or an initial state is not finite, "
    "or the step is far too large for the field's smallest scale"
)


class Trajectories(eqx.Module):
    """Positions and momentum directions at the save times.

    ``positions``/``momenta`` have shape (..., n_times, n_particles, 3); a leading realisation
    axis is present when the field was an ensemble. Units: positions in r_L, times in 1/Ω.
    For :func:`backtrack` they are r(−T) and p̂(−T) at T = ``times``. ``num_steps`` is the
    largest number of solver steps any particle took (−1 for a sharded run, which does not
    gather it).
    """

    times: Float[Array, " T"]
    positions: Float[Array, "*R T P 3"]
    momenta: Float[Array, "*R T P 3"]
    num_steps: Int[Array, ""]


def _check_charge_sign(charge_sign) -> float:
    if isinstance(charge_sign, bool) or charge_sign not in (1, -1, 1.0, -1.0):
        raise ValueError(f"charge_sign must be +1 or -1; got {charge_sign!r}")
    return float(charge_sign)


def _check_devices(devices):
    if devices == "all":
        return jax.device_count()
    if devices is None:
        return None
    devices = _checks.check_positive_int("devices", devices)
    if devices > jax.device_count():
        raise ValueError(
            f"devices={devices} but only {jax.device_count()} device(s) are available "
            f"({jax.local_device_count()} local, {jax.process_count()} process(es); on CPU, set "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax)"
        )
    if jax.process_count() > 1 and devices != jax.device_count():
        raise ValueError(
            f"with {jax.process_count()} processes (jax.distributed) shard over all "
            f"{jax.device_count()} devices: devices='all'; got devices={devices}"
        )
    return devices


def track(
    field: AbstractField,
    positions: Float[ArrayLike, "*R P 3"],
    momenta: Float[ArrayLike, "*R P 3"],
    save_times,
    *,
    charge_sign: float = 1.0,
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    max_steps: int | None = None,
    particle_chunk: int | None = None,
    devices: int | str | None = None,
) -> Trajectories:
    """Forward motion dr/dt = p̂, dp̂/dt = s p̂ × b(r) from (r(0), p̂(0)); saved at t = save_times.

    Args:
        field: any :class:`jaxcr.field.AbstractField`, or a stack of R realisations (then every
            particle is run in each).
        positions, momenta: initial r (r_L) and unit p̂, shape (P, 3), or (R, P, 3) to give
            each realisation its own initial states.
        save_times: strictly increasing times ≥ 0 (units 1/Ω); only these are stored.
        charge_sign: s, +1 for positive charges.
        solver: ``Boris(dt=...)`` (default ``Boris()``: step :func:`jaxcr.default_step`; the
            steps end exactly on the save times, ⌈ΔT/dt⌉ equal steps per save interval) or any
            diffrax solver, e.g. ``diffrax.Tsit5()``.
        stepsize_controller: for a diffrax solver (default
            ``diffrax.PIDController(rtol=1e-8, atol=1e-10)``); not used with Boris.
        adjoint: how derivatives through the solver are taken (default
            ``diffrax.RecursiveCheckpointAdjoint()`` for ``jax.grad``; ``diffrax.ForwardMode()``
            for ``jax.jvp``/``jax.jacfwd``).
        max_steps: solver step limit; default: exactly enough for Boris, 10⁷ for adaptive solvers.
        particle_chunk: integrate particles in sequential chunks of this size (bounds memory).
        devices: shard the particles over this many devices with ``jax.shard_map`` (field
            replicated, no collective inside the solver loop, one all-gather of the final states
            at the end). None: one device; "all": every device of every process (multi-host,
            :func:`jaxcr.distributed.initialize`). Results equal the single-device ones to
            rounding (bit for bit when each device gets the same shapes).
    Raises:
        ValueError, TypeError: for bad input, before any compilation.
        equinox.EquinoxRuntimeError: a non-finite orbit (also inside ``jit``/``grad``).
    """
    _checks.require_x64("track/backtrack")
    check_field(field)
    ts = _checks.check_increasing_times("save_times", save_times)
    _checks.check_last_axis("positions", positions)
    _checks.check_finite("positions", positions)
    _checks.check_unit_vectors("momenta", momenta)
    per_realisation = field.is_ensemble and np.ndim(positions) == 3 and np.shape(positions)[0] == field.n_realisations
    if np.shape(positions) != np.shape(momenta) or not (np.ndim(positions) == 2 or per_realisation):
        raise ValueError(
            "positions and momenta must both have shape (P, 3), or (R, P, 3) with R the number of field "
            f"realisations; got {np.shape(positions)} and {np.shape(momenta)}"
        )
    sign = _check_charge_sign(charge_sign)
    if particle_chunk is not None:
        _checks.check_positive_int("particle_chunk", particle_chunk)
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    if not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise TypeError(
            f"adjoint must be a diffrax adjoint, e.g. diffrax.RecursiveCheckpointAdjoint() or "
            f"diffrax.ForwardMode(); got {adjoint!r}"
        )
    solver = Boris() if solver is None else solver
    if not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(
            f"solver must be jaxcr.Boris(dt=...) or a diffrax solver such as diffrax.Tsit5(); got {solver!r}"
        )
    if isinstance(solver, Boris):
        if stepsize_controller is not None:
            raise ValueError(
                "stepsize_controller is for adaptive diffrax solvers; Boris takes its step from Boris(dt=...)"
            )
        dt = default_step(field) if solver.dt is None else solver.dt
        _checks.check_positive("Boris dt", dt)
        check_step_resolves(float(dt), field.resolution_scales(), solver.allow_unresolved)
        counts = steps_per_interval(ts, float(dt))
        boris_steps = int(counts.sum())
        eager = not any(_checks.is_traced(x) for x in jax.tree_util.tree_leaves((field, positions, momenta)))
        if solver.fuses(field, eager):
            # one diffrax step per save interval, its Boris steps inside the native kernel
            counts = np.minimum(counts, 1)
            solver = Boris(dt=float(dt), fused=True)
        else:
            solver = Boris(fused=False)
        controller: diffrax.AbstractStepSizeController = SaveAlignedSteps(ts, counts)
        # a bound, not a count: rounded up to a power of two so calls with similar step numbers share
        # one compiled solver (the number of steps taken is counts.sum(), Trajectories.num_steps)
        needed = 1 << int(counts.sum()).bit_length()
        dt0 = float(dt)
    else:
        controller = (
            diffrax.PIDController(rtol=1e-8, atol=1e-10) if stepsize_controller is None else stepsize_controller
        )
        if isinstance(controller, diffrax.PIDController):
            for name in ("rtol", "atol"):
                value = np.asarray(getattr(controller, name), dtype=float)
                if not np.all(np.isfinite(value)) or np.any(value < 0) or (name == "rtol" and np.any(value == 0)):
                    raise ValueError(
                        f"stepsize_controller: PIDController {name} = {getattr(controller, name)!r} must be finite and "
                        f"{'> 0' if name == 'rtol' else '>= 0'} (the default is PIDController(rtol=1e-8, atol=1e-10))"
                    )
        needed, dt0 = ADAPTIVE_MAX_STEPS, None
    max_steps = needed if max_steps is None else _checks.check_positive_int("max_steps", max_steps)
    devices = _check_devices(devices)
    args = (
        field,
        jnp.asarray(positions, dtype=float),
        jnp.asarray(momenta, dtype=float),
        jnp.asarray(ts),
        jnp.asarray(sign),
        controller,
    )
    static = dict(solver=solver, adjoint=adjoint, dt0=dt0, max_steps=max_steps, particle_chunk=particle_chunk)
    if devices in (None, 1):
        (r, u), steps = _integrate(*args, **static)
    else:
        (r, u), steps = _integrate_sharded(*args, devices=devices, **static)
        r, u = _finite_or_raise((r, u))
    if isinstance(solver, Boris) and solver.fused and devices in (None, 1):
        steps = jnp.asarray(boris_steps)  # Boris steps taken inside the fused solver steps
    return Trajectories(times=jnp.asarray(ts), positions=r, momenta=u, num_steps=steps)


def _finite_or_raise(ys):
    bad = ~(jnp.all(jnp.isfinite(ys[0])) & jnp.all(jnp.isfinite(ys[1])))
    return eqx.error_if(ys, bad, NON_FINITE_ORBIT)


def _solve(field, r0, u0, ts, charge_sign, controller, *, solver, adjoint, dt0, max_steps, particle_chunk):
    """(positions, momenta) of shape (*R, T, P, 3) and the largest step count; no checks."""

    def one(f, r, u):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(LorentzForce(f, charge_sign)),
            solver,
            t0=0.0,
            t1=ts[-1],
            dt0=dt0,
            y0=(r, u),
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller,
            max_steps=max_steps,
            adjoint=adjoint,
        )
        return sol.ys, sol.stats["num_steps"]  # ((T, 3), (T, 3)), ()

    def particles(f, r0, u0):
        if particle_chunk is None or particle_chunk >= r0.shape[0]:
            ys, steps = jax.vmap(one, in_axes=(None, 0, 0))(f, r0, u0)
        else:
            ys, steps = jax.lax.map(lambda ru: one(f, *ru), (r0, u0), batch_size=particle_chunk)
        # (P, T, 3) -> (T, P, 3)
        return jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), ys), jnp.max(steps)

    if field.is_ensemble:
        if r0.ndim == 3:  # one set of initial states per realisation
            ys, steps = jax.vmap(particles)(field, r0, u0)
        else:
            ys, steps = jax.vmap(lambda f: particles(f, r0, u0))(field)
        return ys, jnp.max(steps)
    return particles(field, r0, u0)


@eqx.filter_jit
def _integrate(field, r0, u0, ts, charge_sign, controller, **static):
    ys, steps = _solve(field, r0, u0, ts, charge_sign, controller, **static)
    return _finite_or_raise(ys), steps


def _integrate_sharded(field, r0, u0, ts, charge_sign, controller, *, devices, **static):
    """:func:`_solve` with the particle axis split over ``devices`` devices (shard_map)."""
    from jax.sharding import AxisType
    from jax.sharding import PartitionSpec as P

    n = r0.shape[-2]
    pad = (-n) % devices
    if pad:  # repeat the last particle; dropped again below
        r0 = jnp.concatenate([r0, jnp.repeat(r0[..., -1:, :], pad, axis=-2)], axis=-2)
        u0 = jnp.concatenate([u0, jnp.repeat(u0[..., -1:, :], pad, axis=-2)], axis=-2)
    multi_process = jax.process_count() > 1
    mesh = jax.make_mesh(
        (devices,),
        ("particles",),
        axis_types=(AxisType.Auto,),
        devices=jax.devices() if multi_process else jax.local_devices()[:devices],
    )
    lead = (None,) * (r0.ndim - 2)
    out_lead = (None,) * (1 + int(field.is_ensemble))  # (R,) T axes before the particle axis
    spec_in, spec_out = P(*lead, "particles"), P(*out_lead, "particles")
    sharded = jax.shard_map(
        lambda f, r, u, t, c, ctl: _solve(f, r, u, t, c, ctl, **static)[0],
        mesh=mesh,
        in_specs=(P(), spec_in, spec_in, P(), P(), P()),
        out_specs=(spec_out, spec_out),
        check_vma=False,
    )
    args = (field, r0, u0, ts, charge_sign, controller)
    compiled = eqx.filter_jit(sharded)
    if multi_process:  # host values, identical on every process, are taken as replicated inputs
        from jax.experimental import multihost_utils

        args = jax.tree_util.tree_map(np.asarray, args)
        ys = multihost_utils.process_allgather(compiled(*args), tiled=True)  # the one collective
        return tuple(jnp.asarray(y[..., :n, :]) for y in ys), jnp.asarray(-1)
    ys = compiled(*args)
    return tuple(y[..., :n, :] for y in ys), jnp.asarray(-1)


def backtrack(
    field: AbstractField,
    directions: Float[ArrayLike, "P 3"],
    save_times,
    *,
    charge_sign: float = 1.0,
    **solver_options,
) -> Trajectories:
    """Backtrack CRs observed from sky directions n̂ (unit, shape (P, 3)) to times −T.

    A CR observed from n̂ has r(0) = 0 and p̂(0) = −n̂. Returns r(−T) and p̂(−T) for every
    T in ``save_times`` (ΩT, strictly increasing, ≥ 0), shape (..., n_times, P, 3). Internally the
    antiparticle (charge −s) is tracked forward along u(0) = n̂ and p̂(−T) = −u(T) (module doc).
    ``solver_options`` are those of :func:`track` (solver, stepsize_controller, adjoint,
    max_steps, particle_chunk, devices). Log-spaced save grids cost nothing extra.
    """
    _checks.check_unit_vectors("directions", directions)
    if np.ndim(directions) != 2:
        raise ValueError(f"directions must have shape (P, 3); got {np.shape(directions)}")
    sign = _check_charge_sign(charge_sign)
    n = jnp.asarray(directions, dtype=float)
    out = track(field, jnp.zeros_like(n), n, save_times, charge_sign=-sign, **solver_options)
    return Trajectories(times=out.times, positions=out.positions, momenta=-out.momenta, num_steps=out.num_steps)


def continue_backtrack(
    field: AbstractField,
    positions: Float[ArrayLike, "*R P 3"],
    momenta: Float[ArrayLike, "*R P 3"],
    duration: float,
    *,
    charge_sign: float = 1.0,
    **solver_options,
) -> tuple[Float[Array, "*R P 3"], Float[Array, "*R P 3"]]:
    """Backtrack further: from r(−T), p̂(−T) to r(−T−duration), p̂(−T−duration).

    ``positions``/``momenta`` have shape (P, 3), or (R, P, 3) for a stack of R realisations.
    This is how long runs proceed segment by segment (and resume from checkpoints).
    """
    sign = _check_charge_sign(charge_sign)
    out = track(field, positions, -jnp.asarray(momenta), [duration], charge_sign=-sign, **solver_options)
    return out.positions[..., -1, :, :], -out.momenta[..., -1, :, :]
