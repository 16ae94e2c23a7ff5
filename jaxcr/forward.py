"""The forward model: parameters → field → backtracked sky → maps → C_ℓ and diffusion statistics.

:class:`SkyModel` holds everything that defines a model sky except the random draws: the
turbulence parameters (:class:`jaxcr.TurbulenceParameters`), the geometry (B0 direction, CR
gradient directions g = ∇n/n in 1/r_L), how the sky is sampled (HEALPix nside), the integrator,
the backtracking times, how maps are made (Eq. 5 with the Fick term, or Eq. 7) and how spectra are
estimated (the analysis, lmax). The functions below are the only path from a model and
a set of PRNG keys (:mod:`jaxcr.random`) to sky maps, spectra and diffusion statistics:
:func:`jaxcr.run_ensemble` calls :func:`initial_state`, :func:`advance` and :func:`observe`
segment by segment; the fits (:mod:`jaxcr.inference`), the gradient estimators and the
Lyapunov diagnostic call :func:`sample_fields` and :func:`final_spectra`. Every function is
pure, so ``jax.grad`` with respect to the model's parameters works where the physics allows
it (short backtracking times; see :mod:`jaxcr.chaos`).
"""

from __future__ import annotations

import dataclasses

import diffrax
import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Key

from . import theory
from .analysis import Analysis
from .backtracking import backtrack, continue_backtrack
from .diffusion import diffusion_tensor, green_kubo_diffusion_tensor, mean_and_sem, relative_diffusion_tensor
from .dynamics import Boris
from .field import FieldPrecision, ModeSumLayout
from .sky import pixel_directions, relative_intensity
from .turbulence import PlaneWaveTurbulence, TurbulenceParameters

__all__ = [
    "SkyModel",
    "sample_fields",
    "initial_state",
    "advance",
    "sky_maps",
    "sky_spectra",
    "observe",
    "final_spectra",
]


class SkyModel(eqx.Module):
    """A model sky: turbulence, geometry, sampling, integrator, times, map and spectrum settings.

    Attributes:
        turbulence: σ², λ_c, λ_min, λ_max, r_L, γ, B0 (lengths in r_L unless r_L is given).
        b0_direction: unit vector ê of the regular field (the frame of the sky maps).
        gradients: CR gradients g = ∇n/n in 1/r_L, shape (G, 3); C_ℓ scale as |g|².
        gradient_names: a name per gradient (labels of the results).
        times: backtracking times ΩT (strictly increasing; the last one is the fits' T).
        nside: HEALPix resolution of the backtracked pixels.
        solver: ``Boris(dt)`` or a diffrax solver; ``stepsize_controller`` for the latter.
        charge_sign: +1 for nuclei.
        fick_term: include −3p̂·K·g in δI (Eq. 5) with the sky's own K(T); False: Eq. 7.
        analysis: how the spectra are made (:class:`jaxcr.analysis.Analysis`: band, background
            method, ℓ ≤ L removal, estimator; the default is the full sky's plain C_ℓ).
        lmax, iterations: spectrum settings (lmax ≤ 2·nside − 1; None → 2·nside − 1).
        gaussian_amplitudes: draw Gaussian mode amplitudes (:class:`jaxcr.TurbulenceNoise`).
        field_precision, field_layout: how the mode sum is evaluated (results agree to rounding).
    """

    turbulence: TurbulenceParameters
    b0_direction: Float[Array, "3"]
    gradients: Float[Array, "G 3"]
    gradient_names: tuple[str, ...] = eqx.field(static=True)
    times: tuple[float, ...] = eqx.field(static=True)
    nside: int = eqx.field(static=True)
    solver: diffrax.AbstractSolver = eqx.field(static=True, default=Boris())
    stepsize_controller: diffrax.AbstractStepSizeController | None = eqx.field(static=True, default=None)
    charge_sign: float = eqx.field(static=True, default=1.0)
    fick_term: bool = eqx.field(static=True, default=False)
    analysis: Analysis = eqx.field(static=True, default=Analysis())
    lmax: int | None = eqx.field(static=True, default=None)
    iterations: int = eqx.field(static=True, default=3)
    gaussian_amplitudes: bool = eqx.field(static=True, default=False)
    field_precision: FieldPrecision = eqx.field(static=True, default=FieldPrecision.FLOAT64)
    field_layout: ModeSumLayout = eqx.field(static=True, default=ModeSumLayout.AUTO)

    @property
    def directions(self) -> Float[Array, "P 3"]:
        """Arrival directions n̂ of the backtracked pixels (HEALPix RING)."""
        return pixel_directions(self.nside)

    def solver_options(self) -> dict:
        """Keyword arguments of :func:`jaxcr.track` for this model's integrator."""
        return dict(solver=self.solver, stepsize_controller=self.stepsize_controller)

    def replace(self, **changes) -> "SkyModel":
        """A copy with some attributes changed."""
        return dataclasses.replace(self, **changes)


def sample_fields(model: SkyModel, keys: Key[Array, " R"]) -> PlaneWaveTurbulence:
    """The field realisations of ``keys`` (shape (R,)), stacked: one per key, the same field as
    :meth:`jaxcr.PlaneWaveTurbulence.sample` gives for the same (seed, index)."""
    fields = PlaneWaveTurbulence.from_keys(keys, model.turbulence, model.b0_direction, model.gaussian_amplitudes)
    return fields.with_precision(model.field_precision).with_layout(model.field_layout)


def initial_state(model: SkyModel, n_realisations: int):
    """(positions, momenta) at T = 0 for R realisations: r = 0, p̂ = −n̂, shape (R, P, 3)."""
    directions = model.directions
    shape = (n_realisations, *directions.shape)
    return jnp.zeros(shape), jnp.broadcast_to(-directions, shape)


def advance(model: SkyModel, fields, positions, momenta, duration: float, **execution):
    """Backtrack the state (R, P, 3) further by ``duration`` (1/Ω); ``execution``: devices,
    particle_chunk, max_steps of :func:`jaxcr.track`."""
    return continue_backtrack(
        fields, positions, momenta, duration, charge_sign=model.charge_sign, **model.solver_options(), **execution
    )


def sky_maps(model: SkyModel, positions, momenta, diffusion=None) -> Float[Array, "R G P"]:
    """δI per realisation and gradient: (r − 3 p̂·K)·g (Eq. 5) with ``diffusion`` = K, or r·g (Eq. 7)."""
    k = diffusion if model.fick_term else None
    return jnp.stack([relative_intensity(positions, momenta, g, k) for g in model.gradients], axis=1)


def sky_spectra(model: SkyModel, maps) -> Float[Array, "... l"]:
    """The spectrum of the maps as the model's analysis makes it
    (:meth:`jaxcr.analysis.Analysis.spectra`: band, background method, ℓ ≤ L removal, estimator).
    Full sky with the defaults: the plain C_ℓ (as healpy ``anafast``)."""
    return model.analysis.spectra(maps, lmax=model.lmax, iterations=model.iterations)


def observe(model: SkyModel, positions, momenta, time) -> dict:
    """Every statistic of the backtracked sky at ΩT = ``time`` (positions, momenta (R, P, 3)).

    Returns a dict of arrays: per-realisation ``cl`` (R, G, L) and their mean and standard error;
    ``cl_standard_diffusion``, the C_ℓ of the realisation-averaged map (the standard-diffusion
    prediction, Fig. 2 magenta); K (Einstein), its Green-Kubo estimate and K̃s (Eq. 9) with
    standard errors; the noise level (Eq. 12); Eq. 6 with both K; both sides of the sum rule
    (Eq. 8) and its noise-corrected left side; the pixel variance of the maps.

    The left side of Eq. 8 sums only ℓ ≤ lmax; once pixel noise dominates, part of the power lies
    above lmax (for white noise the fraction (lmax+1)²/N_pix is captured).
    ``sum_rule_lhs_noise_corrected`` adds the missing N_pix − (lmax+1)² modes at the mean ⟨C_ℓ⟩
    of the upper half of the spectrum, i.e. assumes the power above lmax is white: valid at late
    times, when noise dominates the high ℓ.
    """
    directions = model.directions
    npix = positions.shape[1]
    K, K_sem = diffusion_tensor(positions, time)
    Kgk, Kgk_sem = green_kubo_diffusion_tensor(positions, directions)
    Ks, Ks_sem = relative_diffusion_tensor(positions, time)
    maps = sky_maps(model, positions, momenta, K)  # (R, G, P)
    cl = sky_spectra(model, maps)  # (R, G, L)
    cl_mean, cl_sem = mean_and_sem(cl)
    cl_std = sky_spectra(model, maps.mean(0))  # (G, L)
    gradients = list(model.gradients)
    n_ell = cl_mean.shape[-1]
    return dict(
        cl=cl,
        cl_mean=cl_mean,
        cl_sem=cl_sem,
        cl_standard_diffusion=cl_std,
        diffusion_tensor=K,
        diffusion_tensor_sem=K_sem,
        diffusion_tensor_green_kubo=Kgk,
        diffusion_tensor_green_kubo_sem=Kgk_sem,
        relative_diffusion_tensor=Ks,
        relative_diffusion_tensor_sem=Ks_sem,
        noise_level=jnp.stack([theory.noise_level(K, g, time, npix) for g in gradients]),
        standard_diffusion_dipole_eq6=jnp.stack([theory.standard_diffusion_dipole(K, g) for g in gradients]),
        standard_diffusion_dipole_eq6_green_kubo=jnp.stack(
            [theory.standard_diffusion_dipole(Kgk, g) for g in gradients]
        ),
        sum_rule_lhs=theory.multipole_sum(cl_mean, ell_min=1),
        sum_rule_lhs_noise_corrected=theory.multipole_sum(cl_mean, ell_min=1)
        + (npix - n_ell**2) * cl_mean[:, n_ell // 2 :].mean(-1) / (4 * jnp.pi),
        sum_rule_rhs=jnp.stack([theory.sum_rule_rhs(Ks, g, time) for g in gradients]),
        map_variance=maps.var(-1).mean(0),
    )


def final_spectra(
    model: SkyModel, keys: Key[Array, " R"], adjoint: diffrax.AbstractAdjoint | None = None
) -> Float[Array, "R G l"]:
    """Per-realisation pseudo-C_ℓ at the model's last time: one backtracking solve per realisation.

    The fits' model spectrum. With ``fick_term`` the sky's own K(T) enters the maps, as in
    :func:`observe`; without it (the default) the maps are Eq. 7.
    """
    fields = sample_fields(model, keys)
    traj = backtrack(
        fields,
        model.directions,
        [model.times[-1]],
        charge_sign=model.charge_sign,
        adjoint=adjoint,
        **model.solver_options(),
    )
    r, p = traj.positions[:, -1], traj.momenta[:, -1]
    k = diffusion_tensor(r, model.times[-1])[0] if model.fick_term else None
    return sky_spectra(model, sky_maps(model, r, p, k))
