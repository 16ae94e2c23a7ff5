"""Sky directions, relative-intensity maps (Eq. 5, 7), Liouville maps (Sec. 2) and masks.

Sky convention: a pixel's direction n̂ is where the CR *arrives from*; HEALPix RING ordering;
θ, φ are the healpy colatitude/longitude of the chosen frame (equatorial for the observatory
masks: declination δ = 90° − θ). The CR observed from n̂ has p̂(0) = −n̂ (:mod:`jaxcr.dynamics`).
"""

from __future__ import annotations

import healpy as hp
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from . import _checks

__all__ = [
    "pixel_directions",
    "npix_to_nside",
    "relative_intensity",
    "liouville_map",
    "dipole_distribution",
    "declination_band_mask",
    "check_mask",
    "equatorial_direction",
    "LOCAL_INTERSTELLAR_FIELD_RA_DEC",
]


#: Direction (RA, Dec in degrees, equatorial J2000) of the local interstellar magnetic field as
#: IBEX measures it and the HAWC-IceCube analysis finds it (RA 229.2° ± 3.5°, Dec 11.4° ± 3.0°;
#: Abeysekara et al. 2019, ApJ 871 96).
LOCAL_INTERSTELLAR_FIELD_RA_DEC = (229.2, 11.4)


def equatorial_direction(ra_deg: float, dec_deg: float) -> np.ndarray:
    """Unit vector of (RA, Dec) in degrees, in the frame of jaxcr's sky maps: equatorial, z toward
    the north celestial pole, x toward RA = 0 (HEALPix θ = 90° − Dec, φ = RA)."""
    for name, v in (("ra_deg", ra_deg), ("dec_deg", dec_deg)):
        _checks.check_finite(name, v)
    if not -90.0 <= dec_deg <= 90.0:
        raise ValueError(f"dec_deg must lie in [-90, 90]; got {dec_deg}")
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.array([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def pixel_directions(nside: int) -> Float[Array, "npix 3"]:
    """Unit vectors n̂_i of the HEALPix pixel centres (RING), shape (12 nside², 3)."""
    _checks.require_x64("pixel_directions")
    nside = _checks.check_power_of_two("nside", nside)
    x, y, z = hp.pix2vec(nside, np.arange(hp.nside2npix(nside)))
    return jnp.asarray(np.stack([x, y, z], axis=-1))


def npix_to_nside(npix: int) -> int:
    """nside of a HEALPix map with ``npix`` pixels; a clear error when npix is not 12 nside²."""
    nside = int(round(np.sqrt(npix / 12)))
    if 12 * nside * nside != npix or nside < 1 or nside & (nside - 1):
        raise ValueError(f"a HEALPix map must have 12·nside² pixels with nside a power of two; got {npix} pixels")
    return nside


def relative_intensity(
    positions: Float[ArrayLike, "... P 3"],
    momenta: Float[ArrayLike, "... P 3"] | None,
    gradient: Float[ArrayLike, "3"],
    diffusion_tensor: Float[ArrayLike, "3 3"] | None = None,
) -> Float[Array, "... P"]:
    """δI_i = (r_i(−T) − 3 p̂_i(−T)·K)·g  (paper Eq. 5, Fick's law ansatz).

    Args:
        positions: r(−T) in r_L, shape (..., P, 3).
        momenta: p̂(−T), same shape (unused when ``diffusion_tensor`` is None).
        gradient: g = ∇n/n in 1/r_L, a 3-vector (paper: parallel or perpendicular to B0).
        diffusion_tensor: K in r_L·c (internal units). None keeps only the spatial term
            r·g, the large-T limit used in Eq. 7.
    Returns:
        δI per particle (pixel), dimensionless.
    """
    _checks.require_x64("relative_intensity")
    g = jnp.asarray(gradient, dtype=float)
    if g.shape != (3,):
        raise ValueError(f"gradient must be a 3-vector; got shape {g.shape}")
    _checks.check_finite("gradient", g)
    _checks.check_last_axis("positions", positions)
    _checks.check_finite("positions", positions)
    r = jnp.asarray(positions)
    di = r @ g
    if diffusion_tensor is None:
        return di
    k = jnp.asarray(diffusion_tensor, dtype=float)
    if k.shape != (3, 3):
        raise ValueError(f"diffusion_tensor must have shape (3, 3); got {k.shape}")
    _checks.check_finite("diffusion_tensor", k)
    if momenta is None or np.shape(momenta) != np.shape(positions):
        raise ValueError("momenta of the same shape as positions are needed for the Fick term -3 p̂·K·g")
    _checks.check_finite("momenta", momenta)
    return di - 3.0 * (jnp.asarray(momenta) @ (k @ g))


def dipole_distribution(dipole: Float[ArrayLike, "3"]):
    """f̃(p̂) = d·p̂: a homogeneous dipole initial distribution (Sec. 2), amplitude |d|."""
    d = jnp.asarray(dipole, dtype=float)
    if d.shape != (3,):
        raise ValueError(f"dipole must be a 3-vector; got shape {d.shape}")
    return lambda p: p @ d


def liouville_map(momenta: Float[ArrayLike, "... P 3"], initial=None) -> Float[Array, "... P"]:
    """f(T, 0, p̂) = f̃(p̂(−T)) (Sec. 2, Liouville); ``initial`` defaults to the dipole ẑ·p̂."""
    _checks.require_x64("liouville_map")
    f = initial if initial is not None else dipole_distribution(jnp.array([0.0, 0.0, 1.0]))
    return f(momenta)


def declination_band_mask(nside: int, dec_min_deg: float = -90.0, dec_max_deg: float = 90.0) -> Float[Array, " npix"]:
    """1 where dec_min ≤ δ ≤ dec_max (pixel centres, δ = 90° − θ), else 0 (RING)."""
    _checks.require_x64("declination_band_mask")
    nside = _checks.check_power_of_two("nside", nside)
    if not (-90.0 <= dec_min_deg < dec_max_deg <= 90.0):
        raise ValueError(f"need -90 <= dec_min_deg < dec_max_deg <= 90; got {dec_min_deg}, {dec_max_deg}")
    theta, _ = hp.pix2ang(nside, np.arange(hp.nside2npix(nside)))
    dec = 90.0 - np.degrees(theta)
    inside = (dec >= dec_min_deg) & (dec <= dec_max_deg)
    if not inside.any():
        raise ValueError(
            f"the declination band [{dec_min_deg}°, {dec_max_deg}°] holds no pixel centre at nside={nside} "
            f"(rings are {180 / (4 * nside):.3g}° apart): widen the band or raise nside"
        )
    return jnp.asarray(inside.astype(float))


def check_mask(mask, npix: int, name: str = "mask"):
    """Validate a mask (weights in [0, 1]) for maps with ``npix`` pixels; return it as an array
    (errors name the argument ``name``)."""
    m = np.asarray(mask, dtype=float) if not _checks.is_traced(mask) else mask
    if np.shape(m) != (npix,):
        raise ValueError(f"{name} must have shape ({npix},) to match the map; got {np.shape(m)}")
    if not _checks.is_traced(m):
        _checks.check_finite(name, m)
        if m.min() < 0 or m.max() > 1:
            raise ValueError(f"{name} values must lie in [0, 1]; got range [{m.min()}, {m.max()}]")
        if m.max() == 0:
            raise ValueError(f"{name} is zero everywhere: no pixel is observed")
    return jnp.asarray(m)
