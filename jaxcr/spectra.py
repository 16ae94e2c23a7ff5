"""Differentiable HEALPix map → a_ℓm → C_ℓ (paper Eq. 1), matching healpy's anafast.

The spherical-harmonic transform is s2fft's precomputed HEALPix transform (float64, pure JAX,
differentiable) at band limit L = 2·nside, with healpy's Jacobi iteration scheme
``a ← a + F(m − Y a)`` carried out at the requested ``lmax``, so that the result equals
``healpy.map2alm(m, lmax=lmax, iter=iterations)`` and ``healpy.anafast`` to ~1e-13 relative.

    C_ℓ = (1/(2ℓ+1)) Σ_m |a_ℓm|²                                                        (Eq. 1)

Where C_ℓ can be trusted: HEALPix quadrature is exact only for band-limited maps; power above
ℓ ≈ 2·nside aliases into lower multipoles, and the iterations cannot undo it. jaxcr therefore
allows lmax ≤ 2·nside − 1 (s2fft needs L ≥ 2·nside) and C_ℓ is reliable up to that only when the
map itself has little power beyond it. Maps dominated by pixel noise (large ΩT) are flat in ℓ
and part of their power lies above lmax (see :func:`jaxcr.theory.multipole_sum` and :func:`jaxcr.forward.observe`).

Masked skies: the pseudo-C_ℓ of ``mask·map`` (the estimator IceCube and HAWC use, no f_sky
correction), with optional least-squares removal of the multipoles ℓ ≤ L fitted on the
observed pixels before masking (as the observatories subtract their fitted ℓ ≤ 3 structure).
"""

from __future__ import annotations

import functools

import equinox as eqx
import healpy as hp
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Complex, Float

from . import _checks
from .sky import check_mask, npix_to_nside

__all__ = [
    "map_to_alm",
    "alm_to_map",
    "alm_to_healpy",
    "angular_power_spectrum",
    "subtract_low_multipole_fit",
    "max_lmax",
    "check_lmax",
]


MAX_MAP_VALUE = 1e150  # |a_ℓm|² ~ (4π·value)² must stay below the float64 maximum 1.8e308


def max_lmax(nside: int) -> int:
    """Largest lmax the transform supports for a HEALPix nside: 2·nside − 1."""
    return 2 * nside - 1


@functools.lru_cache(maxsize=8)
def _kernels(nside: int):
    from s2fft.precompute_transforms import construct

    L = 2 * nside
    # Built eagerly even when first requested inside jit/grad, and kept as constants.
    with jax.ensure_compile_time_eval():
        fwd = construct.spin_spherical_kernel_jax(L, reality=True, sampling="healpix", nside=nside, forward=True)
        inv = construct.spin_spherical_kernel_jax(L, reality=True, sampling="healpix", nside=nside, forward=False)
    return np.asarray(fwd), np.asarray(inv)


def _forward(m, nside):
    from s2fft.precompute_transforms import spherical

    L = 2 * nside
    return spherical.forward(
        m, L, kernel=_kernels(nside)[0], sampling="healpix", reality=True, method="jax", nside=nside, iter=0
    )


def _inverse(flm, nside):
    from s2fft.precompute_transforms import spherical

    L = 2 * nside
    return spherical.inverse(
        flm, L, kernel=_kernels(nside)[1], sampling="healpix", reality=True, method="jax", nside=nside
    )


def check_lmax(lmax, nside) -> int:
    """``lmax`` validated for maps of ``nside`` (None → 2·nside − 1); a clear error otherwise."""
    if lmax is None:
        return max_lmax(nside)
    if isinstance(lmax, bool) or not isinstance(lmax, (int, np.integer)) or lmax < 0:
        raise ValueError(f"lmax must be a non-negative integer; got {lmax!r}")
    if lmax > max_lmax(nside):
        raise ValueError(
            f"lmax={lmax} is beyond what the transform supports for nside={nside}: use lmax <= 2*nside-1 = "
            f"{max_lmax(nside)} (C_ℓ above ~2·nside is unreliable on HEALPix), or a larger nside"
        )
    return int(lmax)


def _check_iterations(iterations) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer; got {iterations!r}")
    return int(iterations)


def _map_to_alm_single(m, nside, lmax, iterations):
    L = 2 * nside
    keep = (jnp.arange(L) <= lmax)[:, None]
    a = jnp.where(keep, _forward(m, nside), 0.0)
    for _ in range(iterations):
        a = a + jnp.where(keep, _forward(m - jnp.real(_inverse(a, nside)), nside), 0.0)
    return a[: lmax + 1, L - 1 - lmax : L + lmax]


def _batched(fn, x, core_ndim=1):
    lead = x.shape[: x.ndim - core_ndim]
    flat = x.reshape((-1,) + x.shape[x.ndim - core_ndim :])
    out = jax.vmap(fn)(flat)
    return out.reshape(lead + out.shape[1:])


def map_to_alm(
    maps: Float[ArrayLike, "... npix"], lmax: int | None = None, iterations: int = 3
) -> Complex[Array, "... l m"]:
    """Spherical-harmonic coefficients a_ℓm of HEALPix RING maps, like ``healpy.map2alm(iter=)``.

    Returns shape (..., lmax+1, 2·lmax+1) with m = −lmax..lmax along the last axis (index
    m + lmax); entries with |m| > ℓ are zero. Differentiable with respect to the maps.
    """
    _checks.require_x64("map_to_alm")
    maps = jnp.asarray(_checks.check_real_array("maps", maps))
    nside = npix_to_nside(maps.shape[-1])
    lmax = check_lmax(lmax, nside)
    iterations = _check_iterations(iterations)
    return _batched(lambda m: _map_to_alm_single(m, nside, lmax, iterations), maps)


def alm_to_map(alm: Complex[Array, "... l m"], nside: int) -> Float[Array, "... npix"]:
    """Inverse transform of a_ℓm in the layout of :func:`map_to_alm` to HEALPix RING maps."""
    nside = _checks.check_power_of_two("nside", nside)
    alm = jnp.asarray(alm)
    lmax = alm.shape[-2] - 1
    check_lmax(lmax, nside)
    L = 2 * nside
    pad = ((0, L - 1 - lmax), (L - 1 - lmax, L - 1 - lmax))
    return _batched(lambda a: jnp.real(_inverse(jnp.pad(a, pad), nside)), alm, core_ndim=2)


def alm_to_healpy(alm: Complex[Array, "l m"]) -> np.ndarray:
    """Convert the (lmax+1, 2·lmax+1) layout to healpy's packed m ≥ 0 ordering."""
    a = np.asarray(alm)
    lmax = a.shape[-2] - 1
    ell, m = hp.Alm.getlm(lmax)
    return a[..., ell, lmax + m]


@functools.lru_cache(maxsize=16)
def _real_harmonic_basis(nside: int, ell_max: int) -> np.ndarray:
    """Real basis maps spanning all Y_ℓm with ℓ ≤ ell_max, shape ((ell_max+1)², npix) (healpy)."""
    size = hp.Alm.getsize(ell_max)
    basis = []
    for ell in range(ell_max + 1):
        for m in range(ell + 1):
            for value in (1.0,) if m == 0 else (1.0, 1.0j):
                alm = np.zeros(size, dtype=complex)
                alm[hp.Alm.getidx(ell_max, ell, m)] = value
                basis.append(hp.alm2map(alm, nside, lmax=ell_max))
    return np.array(basis)


def subtract_low_multipole_fit(maps: Float[ArrayLike, "... npix"], ell_max: int, mask=None) -> Float[Array, "... npix"]:
    """Subtract the least-squares fit of all multipoles ℓ ≤ ell_max on the observed pixels (what
    an analysis' ℓ ≤ L removal does; :func:`jaxcr.skymaps.zero_low_multipoles` filters maps for display).

    With ``mask`` (weights in [0, 1]) the fit uses only the observed pixels, as the observatories
    do before computing their spectra (e.g. ell_max=3); on a full sky it removes exactly ℓ ≤ ell_max.
    """
    maps = jnp.asarray(_checks.check_real_array("maps", maps))
    npix = maps.shape[-1]
    nside = npix_to_nside(npix)
    if isinstance(ell_max, bool) or not isinstance(ell_max, (int, np.integer)) or not 0 <= ell_max <= max_lmax(nside):
        raise ValueError(f"ell_max must be an integer in [0, {max_lmax(nside)}]; got {ell_max!r}")
    w = jnp.ones(npix) if mask is None else check_mask(mask, npix)
    Y = jnp.asarray(_real_harmonic_basis(nside, int(ell_max)))  # (nb, npix)
    normal = (Y * w) @ Y.T
    n_fit, observed = (int(ell_max) + 1) ** 2, _checks.concrete(w)
    if observed is not None:
        n_obs = int(np.count_nonzero(observed))
        cond = float(np.linalg.cond(np.asarray(normal)))
        if n_obs < n_fit or not cond < 1e12:
            raise ValueError(
                f"cannot fit the {n_fit} multipole coefficients of ℓ ≤ {ell_max} on {n_obs} observed pixels "
                f"(normal matrix condition number {cond:.3g}): use a smaller ell_max, a larger mask or a larger nside"
            )
    coeff = jnp.linalg.solve(normal, ((maps * w) @ Y.T)[..., None])[..., 0]
    return maps - coeff @ Y


def angular_power_spectrum(
    maps: Float[ArrayLike, "... npix"],
    *,
    lmax: int | None = None,
    iterations: int = 3,
    mask=None,
    remove_ell_max: int | None = None,
) -> Float[Array, "... l"]:
    """C_ℓ, ℓ = 0..lmax, of HEALPix RING maps (Eq. 1), as ``healpy.anafast(map, lmax, iter)``.

    Args:
        maps: shape (..., 12 nside²); leading axes are batched.
        lmax: highest multipole, ≤ 2·nside − 1 (default 2·nside − 1).
        iterations: Jacobi iterations of the quadrature (healpy's ``iter``, default 3).
        mask: optional pixel weights in [0, 1]; the pseudo-C_ℓ of mask·map is returned.
        remove_ell_max: subtract the ℓ ≤ remove_ell_max fit on the observed pixels first.
    """
    _checks.require_x64("angular_power_spectrum")
    maps = jnp.asarray(_checks.check_real_array("maps", maps))
    if maps.ndim == 0:
        raise ValueError("maps must have a pixel axis of length 12·nside²")
    nside = npix_to_nside(maps.shape[-1])
    lmax = check_lmax(lmax, nside)
    values = _checks.concrete(maps)  # one host copy for both checks (None when traced)
    if values is not None:
        _checks.check_finite("maps", values)
        largest = float(np.max(np.abs(values))) if values.size else 0.0
        if largest > MAX_MAP_VALUE:
            raise ValueError(
                f"maps reach |value| = {largest:.3g}: C_ℓ ~ value² would overflow float64 (values up to "
                f"{MAX_MAP_VALUE:g} are allowed); rescale the maps"
            )
    maps = eqx.error_if(maps, ~jnp.all(jnp.isfinite(maps)), "angular_power_spectrum: the maps contain NaN or inf")
    npix = jnp.shape(maps)[-1]
    if mask is not None:
        mask = check_mask(mask, npix)
    if remove_ell_max is not None:
        maps = subtract_low_multipole_fit(maps, remove_ell_max, mask)
    if mask is not None:
        maps = maps * mask
    alm = map_to_alm(maps, lmax=lmax, iterations=iterations)
    ell = jnp.arange(lmax + 1)
    return jnp.sum(jnp.abs(alm) ** 2, axis=-1) / (2 * ell + 1)
