"""Synthetic observed spectra made by jaxcr at known parameters (labelled ``synthetic``).

They stand in for observatory data in tests, injection-recovery runs and calibrations (no
published table of observed C_ℓ is shipped; see :mod:`jaxcr.observations` for the file format).
Both generators take the model's named physical values (``{"sigma2": 1.0, "rho": 0.1}`` for the
paper's model) and see the sky through one :class:`jaxcr.analysis.Analysis`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from . import _checks
from ._version import __version__
from .analysis import white_noise_variance
from .observations import Observatory, ObservedSpectrum
from .observatory import MockObservation, mock_observation, spectrum_from_maps
from .random import realisation_keys
from .spectrum_model import SpectrumModel, backtracked_maps, realisation_spectra

__all__ = ["synthetic_spectrum", "MockSky", "mock_skies", "mock_sky_spectra", "with_pixel_noise"]


def _checked_values(values: Mapping, model: SpectrumModel) -> dict:
    if not isinstance(values, Mapping):
        raise TypeError(
            f"values must map parameter names to values, e.g. {{'sigma2': 1.0, 'rho': 0.1}}; got {values!r}"
        )
    model.turbulence.check_names(list(values))
    for name, v in values.items():
        _checks.check_finite(name, v)
    return {k: float(v) for k, v in values.items()}


def synthetic_spectrum(
    values: Mapping,
    model: SpectrumModel,
    *,
    observatory: str,
    energy_tev: float,
    amplitude: float,
    noise_level: float,
    relative_error: float = 0.05,
    sky_realisations: int | None = None,
    seed: int = 12345,
    ells=None,
) -> ObservedSpectrum:
    """A synthetic observed spectrum made by jaxcr at the named ``values`` (labelled ``synthetic``).

    The "sky" is the mean spectrum of ``sky_realisations`` field realisations (default: the
    model's N_B) drawn from ``seed``, independent of the fit's, seen through the model's analysis,
    times ``amplitude``, plus ``noise_level``; the measurement error σ_ℓ = relative_error·C_ℓ
    scatters the values (Gaussian). The sky-to-sky variance is not in σ_ℓ: the file records
    ``sky_realisations`` and a fit's likelihood adds it.
    """
    values = _checked_values(values, model)
    _checks.check_positive("amplitude", amplitude)
    _checks.check_nonnegative("noise_level", noise_level)
    _checks.check_positive("energy_tev", energy_tev)
    _checks.check_positive("relative_error", relative_error)
    n_sky = (
        model.n_realisations
        if sky_realisations is None
        else _checks.check_positive_int("sky_realisations", sky_realisations)
    )
    analysis = model.analysis
    lmax = model.lmax
    ell = np.arange(1 if analysis.remove_ell_max is None else analysis.remove_ell_max + 1, lmax + 1)
    ell = ell if ells is None else np.asarray(ells)
    if ell.ndim != 1 or ell.size == 0 or np.any(ell < 0) or np.any(ell > lmax) or np.any(np.diff(ell) <= 0):
        raise ValueError(
            f"ells must be increasing multipoles in [0, {lmax}] (the model's lmax = 2·nside − 1); got {ells!r}"
        )
    sky_model = model.replace(seed=seed, n_realisations=max(n_sky, 2))
    s = np.asarray(realisation_spectra(values, sky_model))[:n_sky]
    cl = amplitude * s.mean(0)[ell] + noise_level
    sigma = relative_error * cl
    rng = np.random.default_rng(seed)
    return ObservedSpectrum(
        ell=ell,
        cl=cl + rng.normal(size=cl.shape) * sigma,
        sigma=sigma,
        observatory=observatory,
        energy_tev=energy_tev,
        noise_level=noise_level,
        analysis=analysis,
        nside=model.nside,
        sky_realisations=n_sky,
        synthetic=True,
        source=f"jaxcr {__version__} synthetic, values={values}, seed={seed}, mean of {n_sky} sky realisations",
    )


@dataclasses.dataclass(frozen=True)
class MockSky:
    """One synthetic sky and its mock observation (HEALPix RING, equatorial).

    Attributes:
        relative_intensity: δI of the model sky, sqrt(a)·r(−T)·ĝ with its mean removed (Eq. 7).
        observation: the observatory's counts, background and field of view
            (:class:`jaxcr.observatory.MockObservation`).
        pixel_noise: a·N̂, the white level of the simulated sky's own pixel noise (Eq. 12).
        spectrum: the spectrum file of the observation (:func:`jaxcr.observatory.spectrum_from_maps`)
            with the sky's pixel noise counted as noise of the observation (:func:`with_pixel_noise`).
    """

    relative_intensity: np.ndarray
    observation: MockObservation
    pixel_noise: float
    spectrum: ObservedSpectrum


def with_pixel_noise(spectrum: ObservedSpectrum, level: float, t_ell, v_ell) -> ObservedSpectrum:
    """A simulated sky's spectrum file with the sky's own pixel noise (Eq. 12, white level ``level``)
    counted as noise of the observation, like the shot noise: its mean spectrum through the analysis,
    level·t_ℓ, is added to the isotropic band's mean (and level·median t_ℓ to the flat level), its
    variance level²·v_ℓ to the band's, and its spread with the signal S_ℓ (the spectrum less all
    noise, at least 0), sqrt(v_ℓ level² (1 + 2 S_ℓ/(t_ℓ level))), to the errors. t_ℓ, v_ℓ: mean and
    variance of the analysis' spectrum of unit white noise. Every likelihood form then subtracts
    or models it with the shot noise; a real sky has none."""
    if not level > 0:
        return spectrum
    t, v = np.asarray(t_ell)[spectrum.ell], np.asarray(v_ell)[spectrum.ell]
    shot = spectrum.isotropic_mean if spectrum.isotropic_mean is not None else spectrum.noise_level
    spread = np.sqrt(white_noise_variance(spectrum.cl - shot - level * t, level, t, v))  # t_ℓ = 0: ℓ removed
    band = {}
    if spectrum.isotropic_mean is not None and spectrum.isotropic_sigma is not None:
        band = dict(
            isotropic_mean=spectrum.isotropic_mean + level * t,
            isotropic_sigma=np.sqrt(spectrum.isotropic_sigma**2 + v * level**2),
        )
    return dataclasses.replace(
        spectrum,
        sigma=np.hypot(spectrum.sigma, spread),
        noise_level=spectrum.noise_level + level * float(np.median(t)),
        **band,
    )


def mock_skies(
    values: Mapping,
    model: SpectrumModel,
    observatory: Observatory,
    *,
    time: float,
    amplitude: float,
    n_skies: int,
    seed: int,
    stream: int = 0,
    events: float | None = None,
    lmax: int | None = None,
    n_resamples: int = 16,
) -> list[MockSky]:
    """``n_skies`` single synthetic skies at the named ``values``, each observed by ``observatory``.

    Each sky is one field realisation (keys of ``seed`` and ``stream``,
    :func:`jaxcr.random.realisation_keys`; a campaign's design point k draws stream 1 + k of the
    campaign's seed, which no other stream shares, so stream 0 is independent of every campaign and
    ``seed=`` the campaign's seed, ``stream=1 + k`` observes point k's own realisations) backtracked
    from every pixel of ``model.nside`` to ΩT = ``time`` (:func:`jaxcr.spectrum_model.backtracked_maps`);
    its relative intensity δI = sqrt(a)·r(−T)·ĝ (Eq. 7, a = (|∇n/n| r_L)² = ``amplitude``) is
    observed as the observatory does (:func:`jaxcr.observatory.mock_observation`: ``events``
    Poisson counts in its band, the background estimated by its method) and turned into a spectrum
    file by :func:`jaxcr.observatory.spectrum_from_maps` with the observatory's analysis (errors from
    ``n_resamples`` Poisson resamplings), ℓ = 1..``lmax``. The simulated sky's own pixel noise
    (Eq. 12, measured on the map: :func:`jaxcr.spectrum_model.pixel_noise_level`) is counted as
    noise of the observation, with the shot noise (:func:`with_pixel_noise`): the file's isotropic
    band and errors carry it, so every likelihood form removes or models it and the spectrum less
    its noise is that of the continuous sky. A real sky has none.
    """
    values = _checked_values(values, model)
    _checks.check_positive("amplitude", amplitude)
    _checks.check_positive("time", time)
    _checks.check_positive_int("n_skies", n_skies)
    _checks.check_seed("seed", seed)
    model = model.replace(time=float(time)).resolved(values)
    analysis = observatory.analysis
    maps, noise = backtracked_maps(model, values, realisation_keys(seed, n_skies, stream=stream), [float(time)])
    maps, noise = maps[:, 0], noise[:, 0]  # (n, P), (n,)
    t_ell, v_ell = analysis.noise_response(model.nside)
    out = []
    for i, (m, n_hat) in enumerate(zip(maps, noise)):
        sky = np.sqrt(amplitude) * (np.asarray(m) - float(np.mean(m)))
        obs = mock_observation(sky, observatory, events=events, seed=seed + 1 + i)
        spec = spectrum_from_maps(
            obs.counts,
            obs.background,
            analysis,
            weights=obs.weights,
            lmax=lmax,
            n_resamples=n_resamples,
            seed=seed + 1 + i,
            observatory=observatory.name,
            energy_tev=observatory.median_energy_tev,
            source=f"jaxcr {__version__} mock sky {i} of seed {seed}{f' stream {stream}' if stream else ''}: values={values}, ΩT={time:g}, "
            f"a={amplitude:g}, nside {model.nside}, pixel noise {amplitude * n_hat:.3g} in the noise",
        )
        spec = with_pixel_noise(dataclasses.replace(spec, synthetic=True), amplitude * float(n_hat), t_ell, v_ell)
        out.append(MockSky(sky, obs, float(amplitude * n_hat), spec))
    return out


def mock_sky_spectra(
    values: Mapping, model: SpectrumModel, observatory: Observatory, **options
) -> list[ObservedSpectrum]:
    """The spectrum files of :func:`mock_skies`, one per sky (the same arguments: ``time``,
    ``amplitude``, ``n_skies``, ``seed`` and optionally ``stream``, ``events``, ``lmax``,
    ``n_resamples``)."""
    return [sky.spectrum for sky in mock_skies(values, model, observatory, **options)]
