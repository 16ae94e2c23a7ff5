"""Cosmic-ray motion in a static magnetic field, and backtracking.

Conventions (stated once; tested in ``tests/test_dynamics.py``):

* Internal units: c = 1, lengths in r_L, times in 1/Ω, fields in B0 (:mod:`jaxcr.units`).
* Forward in time a CR of charge sign s (+1 for nuclei, -1 for electrons) obeys

      dr/dt = p̂,   dp̂/dt = s p̂ × b(r).

* A CR *observed from sky direction* n̂ (the direction it arrives from, a HEALPix pixel centre)
  moves along p̂(0) = −n̂ at the observer, r(0) = 0.
* Backtracking integrates the time-reversed system from t = 0 to t = −T. With τ = −t and
  u = −p̂ this is the forward motion of the antiparticle (charge −s) launched outward along
  u(0) = n̂:  dr/dτ = u,  du/dτ = −s u × b(r).  jaxcr integrates that and reports
  r(−T) and p̂(−T) = −u(T).

Solvers: :class:`Boris` (fixed step, second order, |p̂| conserved to rounding) written as a
``diffrax.AbstractSolver``; or any diffrax adaptive solver (``"tsit5"``, ``"dopri5"``,
``"dopri8"``) with a PID step-size controller. Only the requested save times are stored, so
memory does not depend on the number of steps.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _checks
from .turbulence import PlaneWaveTurbulence

__all__ = ["Boris", "Trajectories", "lorentz_vector_field", "track", "backtrack", "continue_backtrack", "default_step"]


def lorentz_vector_field(t, y, args):
    """d/dt (r, u) = (u, s u × b(r)) for the forward motion of charge sign s; args = (field, s)."""
    del t
    field, charge_sign = args
    r, u = y
    return u, charge_sign * jnp.cross(u, field(r))


class _BorisInterpolation(diffrax.AbstractLocalInterpolation):
    """Dense output between Boris steps: r linear; u linear in direction with its norm
    interpolated linearly, so that |u| between steps is |u| at the steps (no artificial dip)."""

    t0: Float[Array, ""]
    t1: Float[Array, ""]
    y0: tuple
    y1: tuple

    def evaluate(self, t0, t1=None, left: bool = True):
        del left
        if t1 is not None:
            a, b = self.evaluate(t0), self.evaluate(t1)
            return jax.tree_util.tree_map(lambda x, y: y - x, a, b)
        theta = jnp.where(self.t1 == self.t0, 0.0, (t0 - self.t0) / jnp.where(self.t1 == self.t0, 1.0, self.t1 - self.t0))
        r0, u0 = self.y0
        r1, u1 = self.y1
        r = r0 + theta * (r1 - r0)
        u = u0 + theta * (u1 - u0)
        n0, n1 = jnp.linalg.norm(u0), jnp.linalg.norm(u1)
        nu = jnp.linalg.norm(u)
        u = u * ((n0 + theta * (n1 - n0)) / jnp.where(nu > 0, nu, 1.0))
        return r, u


def boris_step(field, charge_sign, y, h):
    """One Boris step (drift-kick-drift) of size h for dr/dt = u, du/dt = s u × b(r); y = (r, u)."""
    r, u = y
    r_half = r + 0.5 * h * u
    t_vec = (0.5 * h * charge_sign) * field(r_half)
    u_prime = u + jnp.cross(u, t_vec)
    s_vec = 2.0 * t_vec / (1.0 + jnp.sum(t_vec * t_vec))
    u_new = u + jnp.cross(u_prime, s_vec)
    return r_half + 0.5 * h * u_new, u_new


class Boris(diffrax.AbstractSolver):
    """The Boris pusher (drift-kick-drift form) as a fixed-step diffrax solver.

    One step of size h for du/dt = u × ω(r), ω = s b(r):
        r½ = r + u h/2;  t = ω(r½) h/2;  u' = u + u × t;  u⁺ = u + u' × 2t/(1+|t|²);
        r⁺ = r½ + u⁺ h/2.
    Second order, time-symmetric, and the rotation conserves |u| exactly (to rounding).
    The field and charge sign are read from ``args = (field, charge_sign)``; use it with
    ``diffrax.ODETerm(lorentz_vector_field)`` and ``diffrax.ConstantStepSize``.
    """

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = _BorisInterpolation

    def order(self, terms):
        return 2

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        field, charge_sign = args
        y1 = boris_step(field, charge_sign, y0, t1 - t0)
        return y1, None, dict(y0=y0, y1=y1), None, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


_ADAPTIVE = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8}


class Trajectories(eqx.Module):
    """Positions and momentum directions at the save times.

    ``positions``/``momenta`` have shape (..., n_times, n_particles, 3); a leading realisation
    axis is present when the field was an ensemble. Units: positions in r_L, times in 1/Ω.
    For :func:`backtrack` they are r(−T) and p̂(−T) at T = ``times``.
    """

    times: Float[Array, " T"]
    positions: Float[Array, "... T P 3"]
    momenta: Float[Array, "... T P 3"]


def default_step(field: PlaneWaveTurbulence) -> float:
    """Default Boris step: min(0.1, λ_min/20) in units of 1/Ω, λ_min = 2π/max|k_n|.

    λ_min/20 resolves the smallest wave of the field with 20 steps (the reference C++
    benchmark's choice); 0.1 gives ≥ 60 steps per gyration in weak turbulence.
    """
    k = _checks.concrete(field.wavevectors)
    if k is None:
        raise ValueError("dt must be given explicitly when the field is traced")
    kmax = float(np.max(np.linalg.norm(k, axis=-1))) if k.size else 0.0
    return 0.1 if kmax == 0 else min(0.1, 2 * np.pi / kmax / 20)


def _default_dt(field, solver: str) -> float:
    """Boris: :func:`default_step`; adaptive solvers: initial step 0.01/Ω."""
    return default_step(field) if solver == "boris" else 0.01


def _validate_field(field):
    if not isinstance(field, PlaneWaveTurbulence):
        raise TypeError(f"field must be a PlaneWaveTurbulence; got {type(field).__name__}")
    for name in ("wavevectors", "polarisations", "phases", "regular_field"):
        _checks.check_finite(f"field.{name}", getattr(field, name))


def track(
    field: PlaneWaveTurbulence,
    positions: Float[Array, "P 3"],
    momenta: Float[Array, "P 3"],
    save_times,
    *,
    charge_sign: float = 1.0,
    solver: str = "boris",
    dt: float | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int | None = None,
    particle_chunk: int | None = None,
    adjoint: str = "reverse",
    devices: int | str | None = None,
) -> Trajectories:
    """Forward motion dr/dt = p̂, dp̂/dt = s p̂ × b(r) from (r(0), p̂(0)); saved at t = save_times.

    Args:
        field: a field, or a stack of R realisations (then every particle is run in each).
        positions, momenta: initial r (r_L) and unit p̂, shape (P, 3), or (R, P, 3) to give
            each realisation its own initial states.
        save_times: strictly increasing times ≥ 0 (units 1/Ω); only these are stored.
        charge_sign: s, +1 for positive charges.
        solver: "boris" (fixed step ``dt``) or an adaptive diffrax solver "tsit5", "dopri5",
            "dopri8" (tolerances ``rtol``/``atol``).
        dt: Boris step (1/Ω); default :func:`default_step`. Initial step for adaptive solvers.
        max_steps: solver step limit; default: enough for Boris, 10⁷ for adaptive solvers.
        particle_chunk: integrate particles in sequential chunks of this size (bounds memory).
        adjoint: how derivatives through the solver are taken: "reverse" (``jax.grad``;
            diffrax's recursive checkpointing) or "forward" (``jax.jvp``/``jax.jacfwd``).
        devices: shard the particles over this many devices with ``jax.shard_map`` (field
            replicated, no collective inside the solver loop; particles padded to a multiple of
            ``devices``; one all-gather of the final states at the end). None: one device;
            "all": every device of every process, which is what a multi-host run
            (:func:`jaxcr.distributed.initialize`) needs. Results equal the single-device ones
            to rounding (bit for bit when each device gets the same shapes).
    """
    _validate_field(field)
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
    if charge_sign not in (1, -1, 1.0, -1.0):
        raise ValueError(f"charge_sign must be +1 or -1; got {charge_sign!r}")
    if particle_chunk is not None:
        _checks.check_positive_int("particle_chunk", particle_chunk)
    if adjoint not in ("reverse", "forward"):
        raise ValueError(f"adjoint must be 'reverse' or 'forward'; got {adjoint!r}")
    solver = solver.lower()
    if solver != "boris" and solver not in _ADAPTIVE:
        raise ValueError(f"solver must be 'boris' or one of {sorted(_ADAPTIVE)}; got {solver!r}")
    if dt is None:
        dt = _default_dt(field, solver)
    _checks.check_positive("dt", dt)
    if solver != "boris":
        _checks.check_positive("rtol", rtol)
        _checks.check_positive("atol", atol)
    if max_steps is None:
        max_steps = int(np.ceil(ts[-1] / dt)) + 4 if solver == "boris" else 10_000_000
    max_steps = _checks.check_positive_int("max_steps", max_steps)
    if devices == "all":
        devices = jax.device_count()
    if devices is not None:
        _checks.check_positive_int("devices", devices)
        if devices > jax.device_count():
            raise ValueError(f"devices={devices} but only {jax.device_count()} device(s) are available "
                             f"({jax.local_device_count()} local, {jax.process_count()} process(es); on CPU, set "
                             "XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax)")
        if jax.process_count() > 1 and devices != jax.device_count():
            raise ValueError(f"with {jax.process_count()} processes (jax.distributed) shard over all "
                             f"{jax.device_count()} devices: devices='all'; got devices={devices}")
    integrate = _integrate if devices in (None, 1) else functools.partial(_integrate_sharded, devices=devices)
    ys = integrate(
        field,
        jnp.asarray(positions, dtype=float),
        jnp.asarray(momenta, dtype=float),
        jnp.asarray(ts),
        jnp.asarray(float(charge_sign)),
        jnp.asarray(float(dt)),
        jnp.asarray(float(rtol)),
        jnp.asarray(float(atol)),
        solver=solver,
        max_steps=max_steps,
        particle_chunk=particle_chunk,
        adjoint=adjoint,
    )
    _check_solution_finite(ys, solver, dt)
    return Trajectories(times=jnp.asarray(ts), positions=ys[0], momenta=ys[1])


def _check_solution_finite(ys, solver, dt):
    """Raise (never return a silent NaN) when the integration produced non-finite values."""
    r = _checks.concrete(ys[0])
    if r is None:
        return
    u = _checks.concrete(ys[1])
    bad = ~(np.isfinite(r).all(axis=-1) & np.isfinite(u).all(axis=-1))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise FloatingPointError(
            f"backtracking produced non-finite positions/momenta (first at index {idx} of shape {bad.shape}, "
            f"axes (..., time, particle)); solver={solver!r}, dt={dt}. Likely causes: a step too large for "
            "the field's smallest scale (reduce dt), or a non-finite field parameter."
        )


@eqx.filter_jit
def _integrate(field, r0, u0, ts, charge_sign, dt, rtol, atol, *, solver, max_steps, particle_chunk, adjoint):
    # dt, rtol, atol are traced (no recompilation per step size); max_steps and chunks are static.
    if solver == "boris":
        solver_obj = Boris()
        controller = diffrax.ConstantStepSize()
    else:
        solver_obj = _ADAPTIVE[solver]()
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
    term = diffrax.ODETerm(lorentz_vector_field)

    def one(f, r, u):
        sol = diffrax.diffeqsolve(
            term,
            solver_obj,
            t0=0.0,
            t1=ts[-1],
            dt0=dt,
            y0=(r, u),
            args=(f, charge_sign),
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller,
            max_steps=max_steps,
            adjoint=diffrax.ForwardMode() if adjoint == "forward" else diffrax.RecursiveCheckpointAdjoint(),
        )
        return sol.ys  # ((T, 3), (T, 3))

    def particles(f, r0, u0):
        if particle_chunk is None or particle_chunk >= r0.shape[0]:
            out = jax.vmap(one, in_axes=(None, 0, 0))(f, r0, u0)
        else:
            out = jax.lax.map(lambda ru: one(f, *ru), (r0, u0), batch_size=particle_chunk)
        # (P, T, 3) -> (T, P, 3)
        return jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), out)

    if field.is_ensemble:
        if r0.ndim == 3:  # one set of initial states per realisation
            return jax.vmap(particles)(field, r0, u0)
        return jax.vmap(lambda f: particles(f, r0, u0))(field)
    return particles(field, r0, u0)


def _integrate_sharded(field, r0, u0, ts, charge_sign, dt, rtol, atol, *, devices, **static):
    """:func:`_integrate` with the particle axis split over ``devices`` local devices (shard_map)."""
    from jax.sharding import AxisType
    from jax.sharding import PartitionSpec as P

    n = r0.shape[-2]
    pad = (-n) % devices
    if pad:  # repeat the last particle; dropped again below
        r0 = jnp.concatenate([r0, jnp.repeat(r0[..., -1:, :], pad, axis=-2)], axis=-2)
        u0 = jnp.concatenate([u0, jnp.repeat(u0[..., -1:, :], pad, axis=-2)], axis=-2)
    multi_process = jax.process_count() > 1
    mesh = jax.make_mesh((devices,), ("particles",), axis_types=(AxisType.Auto,),
                         devices=jax.devices() if multi_process else jax.local_devices()[:devices])
    lead = (None,) * (r0.ndim - 2)
    out_lead = (None,) * (1 + int(field.is_ensemble))  # (R,) T axes before the particle axis
    spec_in, spec_out = P(*lead, "particles"), P(*out_lead, "particles")
    sharded = jax.shard_map(
        lambda f, r, u, t, c, h, rt, at: _integrate(f, r, u, t, c, h, rt, at, **static),
        mesh=mesh,
        in_specs=(P(), spec_in, spec_in, P(), P(), P(), P(), P()),
        out_specs=(spec_out, spec_out),
        check_vma=False,
    )
    args = (field, r0, u0, ts, charge_sign, dt, rtol, atol)
    if multi_process:  # host values, identical on every process, are taken as replicated inputs
        from jax.experimental import multihost_utils

        args = jax.tree_util.tree_map(np.asarray, args)
        ys = multihost_utils.process_allgather(jax.jit(sharded)(*args), tiled=True)  # the one collective
        return tuple(jnp.asarray(y[..., :n, :]) for y in ys)
    ys = jax.jit(sharded)(*args)
    return tuple(y[..., :n, :] for y in ys)


def backtrack(
    field: PlaneWaveTurbulence,
    directions: Float[Array, "P 3"],
    save_times,
    *,
    charge_sign: float = 1.0,
    **solver_options,
) -> Trajectories:
    """Backtrack CRs observed from sky directions n̂ (unit, shape (P, 3)) to times −T.

    A CR observed from n̂ has r(0) = 0 and p̂(0) = −n̂. Returns r(−T) and p̂(−T) for every
    T in ``save_times`` (ΩT, strictly increasing, ≥ 0), shape (..., n_times, P, 3). Internally the
    antiparticle (charge −s) is tracked forward along u(0) = n̂ and p̂(−T) = −u(T) (module doc).
    ``solver_options`` are those of :func:`track` (solver, dt, rtol, atol, max_steps,
    particle_chunk, adjoint, devices). Log-spaced save grids cost nothing extra: only saves are stored.
    """
    _checks.check_unit_vectors("directions", directions)
    if np.ndim(directions) != 2:
        raise ValueError(f"directions must have shape (P, 3); got {np.shape(directions)}")
    if charge_sign not in (1, -1, 1.0, -1.0):
        raise ValueError(f"charge_sign must be +1 or -1; got {charge_sign!r}")
    n = jnp.asarray(directions, dtype=float)
    out = track(field, jnp.zeros_like(n), n, save_times, charge_sign=-charge_sign, **solver_options)
    return Trajectories(times=out.times, positions=out.positions, momenta=-out.momenta)


def continue_backtrack(
    field: PlaneWaveTurbulence,
    positions: Float[Array, "... P 3"],
    momenta: Float[Array, "... P 3"],
    duration: float,
    *,
    charge_sign: float = 1.0,
    **solver_options,
) -> tuple[Float[Array, "... P 3"], Float[Array, "... P 3"]]:
    """Backtrack further: from r(−T), p̂(−T) to r(−T−duration), p̂(−T−duration).

    ``positions``/``momenta`` have shape (P, 3), or (R, P, 3) for a stack of R realisations.
    This is how long runs proceed segment by segment (and resume from checkpoints).
    """
    out = track(field, positions, -jnp.asarray(momenta), [duration], charge_sign=-charge_sign, **solver_options)
    return out.positions[..., -1, :, :], -out.momenta[..., -1, :, :]
