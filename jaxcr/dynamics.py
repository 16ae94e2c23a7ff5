"""Equations of motion of a cosmic ray in a static magnetic field, and the Boris integrator.

Conventions (stated once; tested in ``tests/test_dynamics.py``):

* Internal units: c = 1, lengths in r_L, times in 1/Ω, fields in B0 (:mod:`jaxcr.units`).
* Forward in time a CR of charge sign s (+1 for nuclei, -1 for electrons) obeys

      dr/dt = p̂,   dp̂/dt = s p̂ × b(r).

* A CR *observed from sky direction* n̂ (the direction it arrives from, a HEALPix pixel centre)
  moves along p̂(0) = −n̂ at the observer, r(0) = 0. Backtracking (:mod:`jaxcr.backtracking`)
  integrates the time-reversed system, i.e. the antiparticle (charge −s) launched along +n̂.

:class:`LorentzForce` is the vector field as an equinox Module that carries its field and charge
sign, so a diffrax term built from it is all a solver needs. :class:`Boris` is the Boris pusher
as a fixed-step diffrax solver that reads the field from that term. :class:`SaveAlignedSteps`
makes fixed steps that end exactly on every save time.
"""

from __future__ import annotations

from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .field import AbstractField
from .turbulence import PlaneWaveTurbulence, TurbulenceParameters

__all__ = [
    "LorentzForce",
    "Boris",
    "boris_step",
    "SaveAlignedSteps",
    "default_step",
    "steps_per_interval",
    "check_step_resolves",
]

MAX_DEFAULT_STEP = 0.1  # 1/Ω: ≥ 60 steps per gyration in weak turbulence
STEPS_PER_SMALLEST_WAVELENGTH = 20  # the reference C++ benchmark's choice, λ_min/20
DEFAULT_STEPS_PER_GYRATION = 30  # the default step's resolution of the strongest typical field
MIN_STEPS_PER_SMALLEST_WAVELENGTH = 2  # a step must not exceed λ_min/2 ...
MIN_STEPS_PER_GYRATION = 10  # ... nor a tenth of the gyro-period 2π/|b| in the strongest typical field


class LorentzForce(eqx.Module):
    """d/dt (r, u) = (u, s u × b(r)) for the forward motion of charge sign s in ``field``."""

    field: AbstractField
    charge_sign: Float[Array, ""]

    def __call__(self, t, y, args):
        del t, args
        r, u = y
        return u, self.charge_sign * jnp.cross(u, self.field(r))


def boris_step(field: AbstractField, charge_sign, y, h):
    """One Boris step (drift-kick-drift) of size h for dr/dt = u, du/dt = s u × b(r); y = (r, u)."""
    r, u = y
    r_half = r + 0.5 * h * u
    t_vec = (0.5 * h * charge_sign) * field(r_half)
    u_prime = u + jnp.cross(u, t_vec)
    s_vec = 2.0 * t_vec / (1.0 + jnp.sum(t_vec * t_vec))
    u_new = u + jnp.cross(u_prime, s_vec)
    return r_half + 0.5 * h * u_new, u_new


class _BorisInterpolation(diffrax.AbstractLocalInterpolation):
    """Dense output between Boris steps: r linear; u linear in direction with its norm
    interpolated linearly, so that |u| between steps is |u| at the steps (no artificial dip)."""

    t0: Float[Array, ""]  # type: ignore[misc]
    t1: Float[Array, ""]  # type: ignore[misc]
    y0: tuple
    y1: tuple

    def evaluate(self, t0, t1=None, left: bool = True):
        del left
        if t1 is not None:
            a, b = self.evaluate(t0), self.evaluate(t1)
            return jax.tree_util.tree_map(lambda x, y: y - x, a, b)
        span = jnp.where(self.t1 == self.t0, 1.0, self.t1 - self.t0)
        theta = jnp.where(self.t1 == self.t0, 0.0, (t0 - self.t0) / span)
        r0, u0 = self.y0
        r1, u1 = self.y1
        r = r0 + theta * (r1 - r0)
        u = u0 + theta * (u1 - u0)
        n0, n1 = jnp.linalg.norm(u0), jnp.linalg.norm(u1)
        nu = jnp.linalg.norm(u)
        u = u * ((n0 + theta * (n1 - n0)) / jnp.where(nu > 0, nu, 1.0))
        return r, u


class Boris(diffrax.AbstractSolver):
    """The Boris pusher (drift-kick-drift form) as a fixed-step diffrax solver.

    One step of size h for du/dt = u × ω(r), ω = s b(r):
        r½ = r + u h/2;  t = ω(r½) h/2;  u' = u + u × t;  u⁺ = u + u' × 2t/(1+|t|²);
        r⁺ = r½ + u⁺ h/2.
    Second order, time-symmetric, and the rotation conserves |u| exactly (to rounding).

    The field and charge sign are read from the term, ``diffrax.ODETerm(LorentzForce(field, s))``.
    ``dt`` is the step in 1/Ω (None: :func:`default_step` of the field); :func:`jaxcr.track` makes
    the steps end exactly on every save time (:class:`SaveAlignedSteps`). A step must resolve the
    field (:func:`check_step_resolves`: dt ≤ λ_min/2 and ≤ a tenth of the gyro-period): the Boris
    rotation keeps |p̂| = 1 whatever the step, so an unresolved step never shows as NaN, only as
    wrong statistics. ``allow_unresolved=True`` skips that check.

    ``fused``: for a :class:`jaxcr.PlaneWaveTurbulence` on the native CPU kernel
    (:mod:`jaxcr.native`) or the Pallas GPU kernel (:mod:`jaxcr.pallas_kernel`), the steps between
    two save times run inside the kernel in one call (``boris_advance``: the same step, equal to
    rounding), with no return to XLA per step; fused steps have no derivative. None (default): fused when
    :func:`jaxcr.track` is called with concrete arrays (not inside ``jax.jit``, ``jax.grad`` or
    ``jax.vmap``, where nothing can differentiate it), else one diffrax step per Boris step;
    True: fused wherever the field is on one of these kernels (a derivative through it is an error
    that says so); False: never.
    """

    dt: float | None = None
    allow_unresolved: bool = False
    fused: bool | None = None

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = _BorisInterpolation

    def __check_init__(self):
        if self.fused not in (None, True, False):
            raise ValueError(f"Boris fused must be None, True or False; got {self.fused!r}")

    def order(self, terms):
        return 2

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del args, solver_state, made_jump
        force = _lorentz_force(terms)
        if not isinstance(force, LorentzForce):
            raise TypeError(f"Boris needs an ODETerm of a LorentzForce; got {type(force).__name__}")
        if self.fuses(force.field):  # fused=True only (track sets it for eager calls)
            y1 = _fused_steps(force.field, force.charge_sign, y0, t1 - t0, self.dt)
        else:
            y1 = boris_step(force.field, force.charge_sign, y0, t1 - t0)
        return y1, None, dict(y0=y0, y1=y1), None, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def fuses(self, field: AbstractField, eager: bool = False) -> bool:
        """Whether steps in ``field`` run fused in a kernel (see the class docstring);
        ``eager``: the integration was called with concrete arrays."""
        if self.fused is False or (self.fused is None and not eager):
            return False
        return isinstance(field, PlaneWaveTurbulence) and field.uses_fused_kernel()


def _fused_steps(field, charge_sign, y0, span, dt):
    """⌈span/dt⌉ equal Boris steps over ``span`` in the field's kernel (dt: the step bound)."""
    if dt is None:
        raise ValueError("fused Boris steps need Boris(dt=...) (jaxcr.track sets it)")
    n = jnp.maximum(jnp.ceil(span / dt - 1e-9), 1.0)
    r, u = y0
    return field.fused_kernel().boris_advance(
        r,
        u,
        span / n,
        n.astype(jnp.int64),
        field.wavevectors,
        field.polarisations,
        field.phases,
        field.regular_field,
        charge_sign=charge_sign,
        precision=field.precision,
    )


def _lorentz_force(term):
    """The vector field inside a (possibly wrapped: diffrax's WrapTerm) ODETerm."""
    while not hasattr(term, "vector_field") and hasattr(term, "term"):
        term = term.term
    return getattr(term, "vector_field", None)


def default_step(field: AbstractField | TurbulenceParameters) -> float:
    """Default Boris step in 1/Ω: min(0.1, λ_min/20, 2π/(30 |b|)), for a field or the field that
    ``TurbulenceParameters`` describe (concrete values).

    λ_min is the smallest wavelength of the modes (2π/max|k_n|) and |b| ≈ |b0| + 3σ the strongest
    typical field (:meth:`resolution_scales`). λ_min/20 resolves the smallest wave with 20 steps
    (the reference C++ benchmark's choice); 2π/(30|b|) gives 30 steps per gyration in the strongest
    typical field (0.052 for σ² = 1), three times the minimum :func:`check_step_resolves` accepts;
    0.1 caps it in weak turbulence. Rounded to 12 significant digits, so that a λ_min/20 of 0.005 is
    the float 0.005 and not 0.004999999999999988.
    """
    scales = field.resolution_scales()
    if scales is None:
        raise ValueError("the default step needs a concrete field (or concrete parameters); give Boris(dt=...)")
    lambda_min, b_typ = scales
    gyration = 2 * np.pi / (DEFAULT_STEPS_PER_GYRATION * b_typ) if b_typ > 0 else MAX_DEFAULT_STEP
    return float(f"{min(MAX_DEFAULT_STEP, lambda_min / STEPS_PER_SMALLEST_WAVELENGTH, gyration):.12g}")


def check_step_resolves(dt: float, scales: tuple[float, float] | None, allow_unresolved: bool = False) -> None:
    """Raise a ``ValueError`` when a Boris step ``dt`` (1/Ω) cannot resolve a field with ``scales``
    = (smallest wavelength λ_min in r_L, typical strongest |b| in B0): dt must be ≤ λ_min/2 and
    ≤ (2π/|b|)/10. With the paper's turbulence dt = 2 gave K_zz −33 % and K_xx +19 % against
    dt = 0.01 without any NaN. ``scales`` None (a traced field, inside ``jax.jit``, or one without
    known scales): its wavelengths are unknown, but its regular field is B0 = 1 in these units, so dt
    is checked against a tenth of the gyro-period 2π/Ω. ``allow_unresolved``: no check."""
    if allow_unresolved:
        return
    if scales is None:
        scales = (float("inf"), 1.0)
    lambda_min, b_typ = scales
    limits = [
        (
            lambda_min / MIN_STEPS_PER_SMALLEST_WAVELENGTH,
            f"λ_min/{MIN_STEPS_PER_SMALLEST_WAVELENGTH}",
            f"the field's smallest wavelength λ_min = {lambda_min:.4g} r_L",
        )
    ]
    if b_typ > 0:
        period = 2 * np.pi / b_typ
        limits.append(
            (
                period / MIN_STEPS_PER_GYRATION,
                f"1/{MIN_STEPS_PER_GYRATION} of the gyro-period",
                f"the gyro-period 2π/|b| = {period:.4g}/Ω in the strongest typical field |b| ≈ {b_typ:.3g} B0",
            )
        )
    for limit, rule, scale in limits:
        if dt > limit:
            raise ValueError(
                f"Boris dt = {dt:g}/Ω does not resolve {scale}: use dt ≤ {rule} = {limit:.4g} (the default step "
                "min(0.1, λ_min/20) is safe), or Boris(dt=..., allow_unresolved=True) if you know what you do"
            )


def steps_per_interval(save_times, dt: float, t0: float = 0.0) -> np.ndarray:
    """Number of equal Boris steps in each interval between t0 and the save times: the smallest
    count whose step is ≤ dt (to 1e-9 relative); 0 for an interval of zero length."""
    bounds = np.concatenate([[t0], np.asarray(save_times, dtype=float)])
    durations = np.diff(bounds)
    counts = np.ceil(durations / dt - 1e-9).astype(np.int64)
    return np.where(durations > 0, np.maximum(counts, 1), 0)


class SaveAlignedSteps(diffrax.AbstractStepSizeController):
    """Fixed steps that end exactly on every save time.

    Interval k, from the previous save time (or t0) to save time k, is divided into
    ``counts[k]`` equal steps; step j of it ends at b_k + (b_{k+1} − b_k)·(j/n_k), and its last
    step at b_{k+1} exactly. Saved states are therefore states at step ends, not
    interpolations. ``counts`` comes from :func:`steps_per_interval`.
    """

    bounds: Float[Array, " K1"]  # t0 followed by the save times
    cumulative: Int[Array, " K"]  # cumulative step counts at the end of each interval

    def __init__(self, save_times, counts, t0=0.0):
        self.bounds = jnp.concatenate(
            [jnp.reshape(jnp.asarray(t0, dtype=float), (1,)), jnp.asarray(save_times, dtype=float)]
        )
        self.cumulative = jnp.cumsum(jnp.asarray(counts))

    def wrap(self, direction):
        return self

    def _time_of_step(self, m):
        """End time of global step m (1-based)."""
        k = jnp.clip(jnp.sum(self.cumulative < m), 0, self.cumulative.shape[0] - 1)
        before = jnp.where(k > 0, self.cumulative[jnp.maximum(k - 1, 0)], 0)
        n = jnp.maximum(self.cumulative[k] - before, 1)
        j = jnp.clip(m - before, 0, n)
        b0, b1 = self.bounds[k], self.bounds[k + 1]
        span, nf = b1 - b0, n.astype(b0.dtype)
        # first step b0 + span/n, later ones b0 + span·(j/n): the arithmetic of diffrax's
        # ConstantStepSize with dt0 = span/n, so results equal a constant-step run bit for bit
        t = jnp.where(j == 1, b0 + span / nf, b0 + span * (j.astype(b0.dtype) / nf))
        return jnp.where(j == n, b1, t)

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        del terms, t0, t1, y0, dt0, args, func, error_order
        return self._time_of_step(1), jnp.asarray(1)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
        del t0, y0, y1_candidate, args, y_error, error_order
        m = controller_state + 1
        return True, t1, self._time_of_step(m), False, m, diffrax.RESULTS.successful
