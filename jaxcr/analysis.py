"""How an observatory turns its sky into a published spectrum: one :class:`Analysis`.

An analysis is the field of view (a declination band, equatorial), the background method, the
ℓ ≤ L removal and the estimator (:mod:`jaxcr.conventions`). Every record that needs them holds
one :class:`Analysis` (the observatory presets, observed spectra, the forward model, campaigns
and artifacts) and every spectrum of a map is :meth:`Analysis.spectra`: of the model's noise-free
maps, of an observatory's counts and background (:func:`jaxcr.observatory.spectrum_from_maps`),
of white noise (:meth:`Analysis.noise_response`).

The operations, in order: the background estimate (a background estimated by time-scrambling
over a sidereal day preserves the declination profile of the data, so the relative intensity
loses its mean on every declination ring, its m = 0 part: :func:`remove_ring_means`), the ℓ ≤ L
removal fitted on the observed pixels, the pseudo-C_ℓ of w·δI (``anafast``), divided by the
estimator's normalisation. Quadratic in the maps, so a model spectrum scales with the CR
gradient's amplitude squared. Differentiable.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Mapping

import healpy as hp
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from . import _checks
from .conventions import BackgroundMethod, Estimator, estimator_normalisation
from .field import as_option
from .sky import check_mask, declination_band_mask, npix_to_nside
from .spectra import angular_power_spectrum, max_lmax, subtract_low_multipole_fit

__all__ = ["Analysis", "ring_index", "remove_ring_means", "white_noise_variance", "NOISE_MAPS"]

NOISE_MAPS = 400  # white-noise maps behind the noise response (relative error ≈ 1/sqrt(400·f_sky(2ℓ+1)))
_SETTINGS = ("dec_min_deg", "dec_max_deg", "background", "remove_ell_max", "estimator")


@functools.lru_cache(maxsize=16)
def ring_index(nside: int) -> np.ndarray:
    """Index of the iso-latitude (declination) ring of every RING-ordered pixel, 0 at the north pole."""
    theta, _ = hp.pix2ang(_checks.check_power_of_two("nside", nside), np.arange(hp.nside2npix(nside)))
    return np.unique(theta, return_inverse=True)[1].astype(np.int32)


def remove_ring_means(
    maps: Float[ArrayLike, "... npix"], weights: Float[ArrayLike, " npix"] | None = None
) -> Float[Array, "... npix"]:
    """δI minus its weighted mean on every declination ring (the m = 0 loss of time-scrambling).

    The ring mean uses the observed pixels (``weights`` > 0, weighted by them); rings with no
    observed pixel are left unchanged. Linear and differentiable in the maps.
    """
    _checks.require_x64("remove_ring_means")
    maps = jnp.asarray(_checks.check_real_array("maps", maps))
    npix = maps.shape[-1]
    rings = ring_index(npix_to_nside(npix))
    n_rings = int(rings.max()) + 1  # from the numpy array: a constant, also inside a traced function
    ring = jnp.asarray(rings)
    w = jnp.ones(npix) if weights is None else check_mask(weights, npix, "weights")
    total = jax.ops.segment_sum(jnp.moveaxis(maps * w, -1, 0), ring, num_segments=n_rings)  # (rings, ...)
    norm = jax.ops.segment_sum(w, ring, num_segments=n_rings)
    mean = jnp.moveaxis(total, 0, -1) / jnp.where(norm > 0, norm, 1.0)
    return maps - mean[..., ring]


def white_noise_variance(signal, level, t_ell, v_ell):
    """Variance of an analysis' spectrum of white noise of full-sky ``level`` added to a sky whose
    spectrum is ``signal``: v_ℓ N² (1 + 2 S_ℓ/(t_ℓ N)), the noise's own spread and its cross term
    with the signal (S < 0 counts as 0; no cross term where t_ℓ N = 0). t_ℓ, v_ℓ: mean and variance
    of the analysis' spectrum of unit white noise (:meth:`Analysis.noise_response`)."""
    scale = t_ell * level
    cross = np.divide(
        2.0 * np.maximum(signal, 0.0), scale, out=np.zeros(np.broadcast(signal, scale).shape), where=scale > 0
    )
    return v_ell * level**2 * (1.0 + cross)


@dataclasses.dataclass(frozen=True)
class Analysis:
    """How an observatory turns its sky into a published spectrum (module docstring).

    Attributes:
        name: a label (the key of the analysis' spectra in a campaign): letters, digits, '-', '_'.
        dec_min_deg, dec_max_deg: the field of view, a declination band in degrees (equatorial).
        background: how the expected counts are estimated (TIME_SCRAMBLING removes the ring means).
        remove_ell_max: ℓ ≤ L structure fitted and subtracted before the spectrum (None: none).
        estimator: pseudo-C_ℓ (as ``anafast``), or f_sky- or K-corrected.
    """

    name: str = "full"
    dec_min_deg: float = -90.0
    dec_max_deg: float = 90.0
    background: BackgroundMethod = BackgroundMethod.KNOWN
    remove_ell_max: int | None = None
    estimator: Estimator = Estimator.PSEUDO

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"Analysis name must be letters, digits, '-' or '_'; got {self.name!r}")
        for name in ("dec_min_deg", "dec_max_deg"):
            _checks.check_finite(name, getattr(self, name))
        if not -90.0 <= float(self.dec_min_deg) < float(self.dec_max_deg) <= 90.0:
            raise ValueError(f"need -90 <= dec_min_deg < dec_max_deg <= 90; got {self.dec_min_deg}, {self.dec_max_deg}")
        if max(abs(float(self.dec_min_deg)), abs(float(self.dec_max_deg))) <= np.pi / 2:
            raise ValueError(
                f"dec_min_deg = {self.dec_min_deg} and dec_max_deg = {self.dec_max_deg} lie within ±π/2: radians? "
                f"The band is in degrees ({np.degrees(self.dec_min_deg):.1f}, {np.degrees(self.dec_max_deg):.1f} if they are)"
            )
        object.__setattr__(self, "dec_min_deg", float(self.dec_min_deg))
        object.__setattr__(self, "dec_max_deg", float(self.dec_max_deg))
        object.__setattr__(self, "background", as_option(BackgroundMethod, "background", self.background))
        object.__setattr__(self, "estimator", as_option(Estimator, "estimator", self.estimator))
        if self.remove_ell_max is not None and (
            isinstance(self.remove_ell_max, bool)
            or not isinstance(self.remove_ell_max, (int, np.integer))
            or self.remove_ell_max < 0
        ):
            raise ValueError(f"remove_ell_max must be None or an integer >= 0; got {self.remove_ell_max!r}")

    @property
    def full_sky(self) -> bool:
        return (self.dec_min_deg, self.dec_max_deg) == (-90.0, 90.0)

    def mask(self, nside: int) -> np.ndarray | None:
        """The field of view at ``nside``: 1 in the declination band, else 0; None for the full sky."""
        if self.full_sky:
            return None
        with jax.ensure_compile_time_eval():  # a constant, also when called inside a traced function
            return np.asarray(declination_band_mask(nside, self.dec_min_deg, self.dec_max_deg))

    def spectra(
        self,
        maps: Float[ArrayLike, "... npix"],
        weights: Float[ArrayLike, " npix"] | None = None,
        *,
        lmax: int | None = None,
        iterations: int = 3,
    ) -> Float[Array, "... l"]:
        """The spectrum this analysis publishes of the relative-intensity ``maps`` (module
        docstring). ``weights``: the observed pixels (default: the analysis' band)."""
        if weights is None:
            weights = self.mask(npix_to_nside(np.shape(maps)[-1]))
        w = None if weights is None else check_mask(weights, np.shape(maps)[-1], "weights")
        if self.background == BackgroundMethod.TIME_SCRAMBLING:
            maps = remove_ring_means(maps, w)
        cl = angular_power_spectrum(maps, lmax=lmax, iterations=iterations, mask=w, remove_ell_max=self.remove_ell_max)
        return self._normalised(cl, w, np.shape(maps)[-1])

    def data_spectra(self, maps, weights=None, *, lmax: int | None = None, iterations: int = 3) -> np.ndarray:
        """:meth:`spectra` of data maps (numpy in, numpy out) by healpy ``anafast`` (milliseconds per
        map at nside 64, where the differentiable transform takes seconds to compile): the same
        operations, equal to :meth:`spectra` to ~1e-12 relative (tested). Not differentiable."""
        maps = np.atleast_2d(np.asarray(_checks.check_real_array("maps", maps), dtype=float))
        npix = maps.shape[-1]
        nside = npix_to_nside(npix)
        lmax = max_lmax(nside) if lmax is None else int(lmax)
        w = self.mask(nside) if weights is None else np.asarray(check_mask(weights, npix, "weights"))
        if self.background == BackgroundMethod.TIME_SCRAMBLING:
            maps = np.asarray(remove_ring_means(maps, w))
        if self.remove_ell_max is not None:
            maps = np.asarray(subtract_low_multipole_fit(maps, self.remove_ell_max, w))
        masked = maps if w is None else maps * w
        cl = np.stack([hp.anafast(m, lmax=lmax, iter=iterations, use_weights=False) for m in masked])
        return self._normalised(cl, w, npix)

    def _normalised(self, cl, weights, npix: int):
        """The pseudo-C_ℓ divided by the estimator's normalisation (none for PSEUDO)."""
        if self.estimator == Estimator.PSEUDO:
            return cl
        full = np.ones(npix) if weights is None else np.asarray(weights)
        return cl / estimator_normalisation(self.estimator, full, self.dec_min_deg, self.dec_max_deg)

    def noise_response(self, nside: int, n_maps: int = NOISE_MAPS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(t_ℓ, v_ℓ): mean and variance of this analysis' spectrum of white noise whose full-sky
        level is 1 (pixel variance N_pix/4π), ℓ ≤ 2·nside − 1. Monte Carlo over ``n_maps`` maps."""
        npix = 12 * _checks.check_power_of_two("nside", nside) ** 2
        noise = np.random.default_rng(seed).normal(size=(n_maps, npix)) * np.sqrt(npix / (4 * np.pi))
        cl = np.asarray(self.spectra(noise, lmax=max_lmax(nside)))
        return cl.mean(0), cl.var(0, ddof=1)

    def mismatch(self, other: Analysis) -> list[str]:
        """The settings (not the name) in which ``other`` differs from this analysis."""
        return [
            f"{key}: {getattr(other, key)!s} against {getattr(self, key)!s}"
            for key in _SETTINGS
            if getattr(other, key) != getattr(self, key)
        ]

    def as_dict(self) -> dict:
        return {k: v.value if isinstance(v, enum.Enum) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping) -> Analysis:
        return cls(**d)
