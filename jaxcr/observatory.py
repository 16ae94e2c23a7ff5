"""The observatory between the sky and a spectrum: counts, background estimation, spectra from maps.

Equatorial coordinates throughout: a HEALPix RING-ordered map's rings are rings of constant
declination, so a background estimated by time-scrambling over a sidereal day (the detector
sees every right ascension of a declination with the same exposure) preserves the declination
profile of the data: the relative intensity δI = N/⟨N⟩ − 1 loses its mean on every ring, i.e. its
m = 0 part (:func:`jaxcr.analysis.remove_ring_means`). To first order in δI (≈ 10⁻³) that is all it does.

* :func:`mock_observation`: from a model relative-intensity map and an observatory (band or
  exposure, events, background method), Poisson counts and the background the observatory would
  estimate from them;
* :func:`spectrum_from_maps`: from maps of counts and background (arrays, or FITS as healpy
  writes them), the relative intensity, optional ℓ ≤ L removal, the estimator's spectrum
  (pseudo-C_ℓ as ``anafast``, f_sky- or K-corrected), its shot-noise level from the counts, the
  measurement errors from Poisson-resampled counts and the band of isotropic skies, as an
  :class:`jaxcr.observations.ObservedSpectrum` (write it with ``save_spectrum``);
* :func:`noise_spectrum`: the expected spectrum of shot noise through an analysis
  (the analysis itself, the same operations on a noise-free sky, is :class:`jaxcr.analysis.Analysis`).
"""

from __future__ import annotations

import dataclasses

import healpy as hp
import numpy as np
from jaxtyping import ArrayLike, Float

from . import _checks
from .analysis import Analysis, remove_ring_means, ring_index
from .conventions import BackgroundMethod, shot_noise_level
from .field import as_option
from .observations import Observatory, ObservedSpectrum
from .sky import check_mask, declination_band_mask, npix_to_nside
from .spectra import check_lmax, max_lmax

__all__ = [
    "MockObservation",
    "mock_observation",
    "relative_intensity_from_counts",
    "noise_spectrum",
    "spectrum_from_maps",
    "read_healpix_maps",
]


@dataclasses.dataclass(frozen=True)
class MockObservation:
    """Maps of one mock observation (HEALPix RING, equatorial): ``counts`` (Poisson events),
    ``background`` (the expected counts as the observatory estimates them), ``expected`` (the
    true expected counts of an isotropic sky) and ``weights`` (the field of view)."""

    counts: np.ndarray
    background: np.ndarray
    expected: np.ndarray
    weights: np.ndarray
    background_method: BackgroundMethod


def _scrambled_background(counts, expected, weights):
    """Time-scrambling over a sidereal day: on each declination ring, the ring's counts shared in
    proportion to the exposure (the expected counts) of its observed pixels."""
    ring = ring_index(npix_to_nside(counts.size))
    n_rings = int(ring.max()) + 1
    obs = weights > 0
    ring_counts = np.bincount(ring[obs], weights=counts[obs], minlength=n_rings)
    ring_expected = np.bincount(ring[obs], weights=expected[obs], minlength=n_rings)
    share = np.where(ring_expected > 0, ring_counts / np.where(ring_expected > 0, ring_expected, 1.0), 0.0)
    return np.where(obs, expected * share[ring], 0.0)


def mock_observation(
    sky: Float[ArrayLike, " npix"],
    observatory: Observatory,
    *,
    events: float | None = None,
    seed: int = 0,
    background: BackgroundMethod | str | None = None,
    exposure: Float[ArrayLike, " npix"] | None = None,
) -> MockObservation:
    """A mock observation of the relative-intensity map ``sky`` (δI, equatorial, RING).

    Expected counts: ``events`` (default the observatory's N_CR) spread over its band in proportion
    to ``exposure`` (default uniform). Counts are Poisson with mean n_i (1 + δI_i); the background
    is estimated as the observatory does (``background``, default the observatory's method).
    """
    sky = np.asarray(_checks.check_real_array("sky", sky), dtype=float)
    _checks.check_finite("sky", sky)
    nside = npix_to_nside(sky.size)
    if np.any(sky <= -1):
        raise ValueError("sky is a relative intensity δI and must be > −1 everywhere (a rate 1 + δI ≥ 0)")
    _checks.check_seed("seed", seed)
    method = as_option(
        BackgroundMethod, "background", observatory.analysis.background if background is None else background
    )
    weights = observatory.mask(nside)
    if exposure is not None:
        exposure = np.asarray(exposure, dtype=float)
        if exposure.shape != sky.shape or not np.all(np.isfinite(exposure)) or np.any(exposure < 0):
            raise ValueError(f"exposure must be a finite, non-negative map of {sky.size} pixels")
        if not np.any(exposure * weights > 0):
            raise ValueError("exposure is zero everywhere in the observatory's band")
        weights = np.where(exposure > 0, weights, 0.0)
    expected = observatory.expected_counts(nside, events, exposure)
    counts = np.random.default_rng(seed).poisson(expected * (1.0 + sky)).astype(float)
    bg = _scrambled_background(counts, expected, weights) if method == BackgroundMethod.TIME_SCRAMBLING else expected
    return MockObservation(counts=counts, background=bg, expected=expected, weights=weights, background_method=method)


def relative_intensity_from_counts(counts, background, weights) -> np.ndarray:
    """δI = N/⟨N⟩ − 1 on the observed pixels (weights > 0 and background > 0), 0 elsewhere."""
    counts, background, weights = (np.asarray(x, dtype=float) for x in (counts, background, weights))
    ok = (weights > 0) & (background > 0)
    return np.where(ok, counts / np.where(ok, background, 1.0) - 1.0, 0.0)


def noise_spectrum(
    expected_counts: Float[ArrayLike, " npix"],
    weights: Float[ArrayLike, " npix"],
    analysis: Analysis,
    *,
    lmax: int | None = None,
    n_maps: int = 64,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of the spectrum of shot noise through ``analysis``.

    White noise of pixel variance 1/n_i goes through the analysis' operations
    (:meth:`jaxcr.analysis.Analysis.spectra`): without them its mean is the flat
    :func:`jaxcr.conventions.shot_noise_level`; the ring-mean removal takes out the m = 0 part (a
    fraction ≈ 1/(2ℓ+1)) and the ℓ ≤ L removal the fitted multipoles, which this Monte Carlo over
    ``n_maps`` maps accounts for.
    """
    n = np.asarray(expected_counts, dtype=float)
    w = np.asarray(check_mask(weights, n.size, "weights"))
    if np.any(n[w > 0] <= 0):
        raise ValueError("expected_counts must be > 0 in every observed pixel")
    _checks.check_positive_int("n_maps", n_maps)
    sd = np.where(w > 0, 1.0 / np.sqrt(np.where(w > 0, n, 1.0)), 0.0)
    noise = np.random.default_rng(seed).normal(size=(n_maps, n.size)) * sd
    cl = np.asarray(analysis.spectra(noise, w, lmax=lmax))
    return cl.mean(0), cl.std(0, ddof=1) / np.sqrt(n_maps)


def spectrum_from_maps(
    counts: Float[ArrayLike, " npix"],
    background: Float[ArrayLike, " npix"],
    analysis: Analysis,
    *,
    weights: Float[ArrayLike, " npix"] | None = None,
    lmax: int | None = None,
    ell_min: int = 1,
    n_resamples: int = 32,
    seed: int = 0,
    observatory: str = "observed",
    energy_tev: float,
    background_samples: float | None = None,
    source: str = "",
) -> ObservedSpectrum:
    """The spectrum file ``analysis`` makes from maps of counts and background.

    Args:
        counts, background: HEALPix RING maps (equatorial) of observed events and of the expected
            (background) events, as estimated by the analysis' background method.
        analysis: band, background method, ℓ ≤ L removal and estimator (:class:`jaxcr.analysis.Analysis`).
        weights: the field of view (default: pixels with background > 0 inside the analysis' band).
        lmax: the largest multipole in the file (default 2·nside − 1); ℓ from ``ell_min``. The
            spectrum is always estimated to 2·nside − 1, as the model's maps are (with a mask, the
            iterated transform's C_ℓ depend on the largest multipole it solves for: at nside 8,
            solving to ℓ 7 instead of 15 moves them by up to 0.1 %), and then cut.
        n_resamples: Poisson resamplings of the background: the isotropic band (mean N_ℓ and 1σ of
            isotropic skies) and the measurement errors σ_ℓ, the shot-noise spread of Ĉ_ℓ given the
            sky, (2/(2ℓ+1))(2SN + N²) for a Gaussian full sky: the isotropic spread (N², the mask's
            coupling included) times 1 + 2S/N with S = Ĉ_ℓ − N_ℓ (at least a quarter of it).
        observatory, energy_tev: written into the spectrum file; ``energy_tev`` is the events'
            median energy in TeV (required: a fit turns r_L/λ_c into λ_c in pc with it).
        background_samples: α where the background is the mean of α scrambled (or simulated) copies
            of the data, so that its own Poisson noise has variance ⟨N⟩/α per pixel: the noise level
            is then (1 + 1/α) times the counts' alone, and the resamplings draw the background too
            (IceCube's time-scrambling: α = 20, about 5 % more noise). Default: the background has no
            noise of its own (as the ring sharing of :func:`mock_observation`, whose noise lies on
            the rings and is removed with the ring means).
    Returns:
        An :class:`ObservedSpectrum` (noise level from the background, the estimator's convention).

    Pixels outside the field of view must be 0 in both maps (healpy's ``UNSEEN`` is refused: set
    them to 0, as ``jaxcr spectrum-from-maps`` does). A pixel with no events where the background
    expects more than 14 (Poisson probability below 10⁻⁶) is refused as dead: leave it out of
    ``weights`` or set its background to 0.
    """
    if not isinstance(analysis, Analysis):
        raise TypeError(f"analysis must be an Analysis (jaxcr.analysis); got {type(analysis).__name__}")
    counts = np.asarray(_checks.check_real_array("counts", counts), dtype=float)
    background = np.asarray(_checks.check_real_array("background", background), dtype=float)
    if counts.shape != background.shape or counts.ndim != 1:
        raise ValueError(f"counts and background must be maps of one shape; got {counts.shape}, {background.shape}")
    for name, m in (("counts", counts), ("background", background)):
        unseen = int(np.sum(np.isclose(m, hp.UNSEEN)))
        if unseen:
            raise ValueError(
                f"{name} has {unseen} pixels at healpy's UNSEEN ({hp.UNSEEN:g}), i.e. outside the field of view: "
                "set counts and background to 0 there (jaxcr spectrum-from-maps does)"
            )
        _checks.check_finite(name, m)
        if np.any(m < 0):
            raise ValueError(f"{name} must be >= 0 (event numbers)")
    nside = npix_to_nside(counts.size)
    band = np.asarray(declination_band_mask(nside, analysis.dec_min_deg, analysis.dec_max_deg))
    w = band * (background > 0) if weights is None else np.asarray(check_mask(weights, counts.size, "weights"))
    _check_observed_maps(counts, background, w, analysis)
    lmax = check_lmax(lmax, nside)
    _checks.check_positive_int("n_resamples", n_resamples)
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be >= 2 (the errors are a standard deviation); got {n_resamples}")
    if isinstance(ell_min, bool) or not isinstance(ell_min, (int, np.integer)) or not 0 <= ell_min <= lmax:
        raise ValueError(f"ell_min must be an integer in [0, lmax = {lmax}]; got {ell_min!r}")
    _checks.check_positive("energy_tev", energy_tev)
    if background_samples is not None:
        _checks.check_positive("background_samples", background_samples)
    rng = np.random.default_rng(seed)
    full = max_lmax(nside)  # the model's maps are transformed to 2·nside − 1 too; the file is cut to lmax below
    cl = analysis.data_spectra(relative_intensity_from_counts(counts, background, w), w, lmax=full)[0]

    def resampled_background():
        if background_samples is None:
            return background
        return rng.poisson(background_samples * background) / background_samples

    isotropic = np.stack(
        [relative_intensity_from_counts(rng.poisson(background), resampled_background(), w) for _ in range(n_resamples)]
    )
    iso = analysis.data_spectra(isotropic, w, lmax=full)
    # the shot-noise spread of Ĉ_ℓ given the sky: (2/(2ℓ+1))(2SN + N²) for a Gaussian full sky, i.e. the
    # spread of isotropic skies (N², with the mask's coupling) times 1 + 2S/N, with the unbiased S = Ĉ_ℓ − N
    # (a floor of a quarter of the isotropic spread where Ĉ_ℓ falls far below the noise level)
    level = iso.mean(0)
    excess = 2 * (cl - level) / np.where(level > 0, level, np.inf)
    sigma = np.sqrt(iso.var(0, ddof=1) * np.maximum(1 + excess, 0.25))
    ell = np.arange(ell_min, lmax + 1)
    return ObservedSpectrum(
        ell=ell,
        cl=cl[ell],
        sigma=np.maximum(sigma[ell], 1e-300),
        observatory=observatory,
        energy_tev=float(energy_tev),
        noise_level=shot_noise_level(background, w, analysis.estimator, analysis.dec_min_deg, analysis.dec_max_deg)
        * (1.0 if background_samples is None else 1.0 + 1.0 / background_samples),
        analysis=analysis,
        nside=nside,
        isotropic_mean=iso.mean(0)[ell],
        isotropic_sigma=iso.std(0, ddof=1)[ell],
        source=source or f"spectrum_from_maps: {int(counts.sum())} events, nside {nside}, {n_resamples} resamplings",
    )


#: header spellings of the pixel orderings and of equatorial coordinates (``COORDSYS``)
RING_ORDERINGS = ("RING",)
NESTED_ORDERINGS = ("NESTED", "NEST")
EQUATORIAL_COORDSYS = ("C", "CEL", "CELESTIAL", "EQ", "EQU", "EQUATORIAL", "Q", "ICRS", "FK5", "J2000")


#: a pixel with no events where the background expects more than this is dead (P(0) < 10⁻⁶)
DEAD_PIXEL_EXPECTED = 14.0


def _check_observed_maps(counts, background, weights, analysis: Analysis) -> None:
    """Refuse maps that would give a finite but wrong spectrum (spectrum_from_maps' docstring)."""
    observed = weights > 0
    if np.any(background[observed] <= 0):
        raise ValueError("background must be > 0 in every pixel of the field of view (weights > 0)")
    if counts[observed].sum() <= 0:
        raise ValueError("counts has no events in the field of view: there is no sky to make a spectrum of")
    dead = observed & (counts == 0) & (background > DEAD_PIXEL_EXPECTED)
    if dead.any():
        raise ValueError(
            f"counts has {int(dead.sum())} dead pixels (0 events where the background expects more than "
            f"{DEAD_PIXEL_EXPECTED:g}, Poisson probability < 1e-6 each; e.g. pixel {int(np.flatnonzero(dead)[0])}): "
            "leave them out of the field of view (weights 0, or background 0)"
        )
    if analysis.background == BackgroundMethod.TIME_SCRAMBLING:
        # a time-scrambled background is constant on each declination ring of a RING map up to its own noise
        # (at most Poisson, α ≥ 1); NESTED pixels read as RING mix declinations on every ring: the rings then
        # explain little of its variance and it varies along them by far more than its noise
        residual = np.asarray(remove_ring_means(background, observed.astype(float)))[observed]  # b − ring mean
        b = background[observed]
        within = float(np.sqrt(np.mean((residual / (b - residual)) ** 2)))
        explained = 1.0 - float(np.var(residual)) / max(float(np.var(b)), 1e-300)
        poisson = 3.0 * float(np.sqrt(np.mean(1.0 / b)))  # 3× the background's own Poisson scatter at α = 1
        if within > poisson and explained < 0.5:
            raise ValueError(
                f"the time-scrambled background varies by {within:.0%} r.m.s. along declination rings (rings explain "
                f"{max(explained, 0):.0%} of its variance): are the maps NESTED but read as RING? Give the ordering "
                "(ORDERING in the FITS header, or --ordering nested); or is the background not time-scrambled "
                "(background_method='known')?"
            )


def read_healpix_maps(path, fields=(0,), *, ordering: str | None = None) -> list[np.ndarray]:
    """Maps from a FITS file as healpy writes them (one column per map), in RING order.

    The header decides: ``ORDERING`` (RING, or NESTED/NEST in any case, reordered to RING; ``ordering``
    overrides it, and is needed where the header has none) and ``COORDSYS`` (equatorial: C, CELESTIAL,
    EQUATORIAL, ...; a galactic or ecliptic map is refused: the analyses' rings of constant
    declination need equatorial maps, and rotating a counts map by interpolation breaks its Poisson
    statistics). Pixels at healpy's ``UNSEEN`` are returned as they are.
    """
    from astropy.io import fits

    try:
        header = fits.getheader(str(path), 1)
    except Exception as err:
        raise ValueError(f"{path}: cannot be read as a HEALPix FITS map ({' '.join(str(err).split())})") from None
    n_columns = int(header.get("TFIELDS", 0))
    for f in fields:
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or not 0 <= f < n_columns:
            raise ValueError(
                f"{path} has {n_columns} map column(s), numbered 0..{n_columns - 1}; there is no column {f!r}"
            )
    coordsys = str(header.get("COORDSYS", "C")).strip().upper()
    if coordsys not in EQUATORIAL_COORDSYS:
        raise ValueError(
            f"{path} is in COORDSYS={coordsys!r}, not equatorial: the analyses remove ring means on rings of "
            "constant declination; give counts and background maps made in equatorial coordinates"
        )
    stated = str(header.get("ORDERING", "")).strip().upper() if ordering is None else str(ordering).strip().upper()
    if stated not in RING_ORDERINGS + NESTED_ORDERINGS:
        where = f"{path} has ORDERING={stated!r} in its header" if stated else f"{path} has no ORDERING in its header"
        raise ValueError(f"{where}: pass the pixel ordering, ordering='ring' or 'nested'")
    try:
        maps = hp.read_map(str(path), field=tuple(fields), nest=None, dtype=np.float64)
    except Exception as err:
        raise ValueError(f"{path}: cannot be read as a HEALPix FITS map ({' '.join(str(err).split())})") from None
    maps = np.atleast_2d(np.asarray(maps, dtype=float))
    if stated in NESTED_ORDERINGS:
        maps = np.atleast_2d(hp.reorder(maps, n2r=True))
    return [m for m in maps]
