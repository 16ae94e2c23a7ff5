"""Sky maps of the relative intensity δI at chosen backtracking times: what a physicist looks at
first (as in the maps of Ahlers & Mertsch 2015).

Every HEALPix pixel of a field realisation is backtracked to each time ΩT; δI = r(−T)·g (paper
Eq. 7, the large-T limit) for each gradient g, |g| = 1/r_L (jaxcr's normalisation of δI and
C_ℓ); the multipoles ℓ ≤ ``remove_ell_max`` are removed with healpy (at large ΩT the dipole
dominates the map and hides the small-scale structure). :func:`sky_maps` returns an xarray
Dataset with units, parameters and versions; :func:`jaxcr.plot.plot_sky_maps` draws it in
Mollweide projection.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr
from jaxtyping import Float

from . import _checks
from ._dataset import provenance
from .backtracking import backtrack
from .conventions import FIG2_GRADIENTS
from .dynamics import Boris
from .sky import pixel_directions, relative_intensity
from .turbulence import PlaneWaveTurbulence, TurbulenceParameters

__all__ = ["sky_maps", "zero_low_multipoles"]

GRADIENTS = FIG2_GRADIENTS  # ∥ and ⊥ to B0 = ẑ


def zero_low_multipoles(maps: Float[np.ndarray, "... P"], ell_max: int) -> Float[np.ndarray, "... P"]:
    """The maps (RING order) with their a_ℓm of ℓ ≤ ``ell_max`` set to zero, for display (healpy
    map2alm with 3 iterations, alm2map; the full sky). ``ell_max`` −1 returns them as they are.
    The observatories' subtraction of the ℓ ≤ L fit on the observed pixels is
    :func:`jaxcr.spectra.subtract_low_multipole_fit`."""
    import healpy as hp

    maps = np.asarray(maps, dtype=float)
    if ell_max < 0:
        return maps
    nside = hp.npix2nside(maps.shape[-1])
    lmax = 3 * nside - 1
    ell, _ = hp.Alm.getlm(lmax)
    out = np.empty_like(maps)
    for index in np.ndindex(maps.shape[:-1]):
        alm = hp.map2alm(maps[index], lmax=lmax, iter=3)
        alm[ell <= ell_max] = 0.0
        out[index] = hp.alm2map(alm, nside, lmax=lmax)
    return out


def sky_maps(
    params: TurbulenceParameters,
    nside: int,
    times,
    seed: int = 0,
    n_realisations: int = 1,
    solver: Boris | None = None,
    remove_ell_max: int = 1,
) -> xr.Dataset:
    """Maps δI = r(−T)·g for g ∥ and ⊥ B0 (ẑ), |g| = 1/r_L, at each ΩT in ``times``.

    Args:
        params: the turbulence (:class:`jaxcr.TurbulenceParameters`, lengths in r_L).
        nside: HEALPix nside of the backtracked pixels (one particle per pixel).
        times: backtracking times ΩT (1/Ω), increasing.
        seed, n_realisations: realisations 0..n−1 of ``seed`` (:mod:`jaxcr.random`).
        solver: ``Boris(dt=...)`` (default: :func:`jaxcr.default_step`).
        remove_ell_max: multipoles ℓ ≤ this are removed from the saved ``sky_map`` (−1: none);
            ``sky_map_full`` keeps all of them.
    Returns:
        Dataset with ``sky_map`` and ``sky_map_full`` (time, realisation, gradient, pixel),
        RING order, dimensionless, and the parameters, seed and versions as attributes.
    """
    nside = _checks.check_positive_int("nside", nside)
    ts = _checks.check_increasing_times("times", times)
    n_realisations = _checks.check_positive_int("n_realisations", n_realisations)
    if not isinstance(remove_ell_max, int | np.integer) or remove_ell_max < -1 or remove_ell_max >= 3 * nside:
        raise ValueError(f"remove_ell_max must be an integer from -1 to {3 * nside - 1}; got {remove_ell_max!r}")
    solver = Boris() if solver is None else solver
    fields = PlaneWaveTurbulence.sample_ensemble(seed, params, n_realisations)
    traj = backtrack(fields, pixel_directions(nside), ts, solver=solver)  # (R, T, P, 3)
    full = np.stack(
        [np.asarray(relative_intensity(traj.positions, None, np.asarray(g))) for g in GRADIENTS.values()], axis=-2
    )  # (R, T, G, P)
    full = np.moveaxis(full, 1, 0)  # (T, R, G, P)
    dims = ("time", "realisation", "gradient", "pixel")
    attrs = dict(
        description="relative intensity dI = r(-T).g (Eq. 7) of every HEALPix pixel (RING order) at each OmegaT",
        normalisation="|grad n / n| = 1/r_L: dI in units of r_L |grad n / n|",
        nside=nside,
        seed=seed,
        remove_ell_max=remove_ell_max,
        turbulence=json.dumps(params.as_dict()),
        solver=repr(solver),
        **provenance(),
    )
    return xr.Dataset(
        {
            "sky_map": (
                dims,
                zero_low_multipoles(full, remove_ell_max),
                _map_attrs(f"dI without l <= {remove_ell_max}"),
            ),
            "sky_map_full": (dims, full, _map_attrs("dI, all multipoles")),
        },
        coords={
            "time": ("time", ts, {"units": "1/Omega", "long_name": "backtracking time OmegaT"}),
            "realisation": np.arange(n_realisations),
            "gradient": list(GRADIENTS),
            "gradient_vector": (("gradient", "xyz"), np.array(list(GRADIENTS.values())), {"units": "1/r_L"}),
        },
        attrs=attrs,
    )


def _map_attrs(long_name: str) -> dict:
    return {"units": "1", "long_name": long_name}
