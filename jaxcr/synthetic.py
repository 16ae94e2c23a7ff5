"""Synthetic observed spectra made by jaxcr at known parameters (labelled ``synthetic``).

They stand in for observatory data in tests, injection-recovery runs and calibrations (no
published table of observed C_ℓ is shipped; see :mod:`jaxcr.observations` for the file format).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from . import _checks
from ._version import __version__
from .conventions import BackgroundMethod, Estimator
from .field import as_option
from .inference.model import SpectrumModel, realisation_spectra
from .observations import Observatory, ObservedSpectrum

__all__ = ["synthetic_spectrum", "mock_sky_spectra"]


def synthetic_spectrum(
    theta,
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
    dec_min_deg: float = -90.0,
    dec_max_deg: float = 90.0,
    remove_ell_max: int | None = None,
    estimator: Estimator | str = Estimator.PSEUDO,
    background: BackgroundMethod | str = BackgroundMethod.KNOWN,
) -> ObservedSpectrum:
    """A synthetic observed spectrum made by jaxcr at known θ (labelled ``synthetic``).

    The "sky" is the mean spectrum of ``sky_realisations`` field realisations (default: the
    model's N_B) drawn from ``seed``, independent of the fit's, times ``amplitude``, plus
    ``noise_level``; the measurement error σ_ℓ = relative_error·C_ℓ scatters the values
    (Gaussian). The sky-to-sky variance is not in σ_ℓ: the file records ``sky_realisations`` and
    the fit's likelihood adds it (module docstring).
        The model sky goes through the observatory's operations (band, ``background`` method: ring
    means removed if time-scrambled, ℓ ≤ L removal, ``estimator``), as the fit's model does.
    """
    theta = np.asarray(theta, dtype=float)
    est = as_option(Estimator, "estimator", estimator)
    bg = as_option(BackgroundMethod, "background", background)
    if theta.shape != (2,) or not np.all(np.isfinite(theta)):
        raise ValueError(f"theta must be finite (ln sigma2, ln rho), shape (2,); got {theta!r}")
    _checks.check_positive("amplitude", amplitude)
    _checks.check_nonnegative("noise_level", noise_level)
    _checks.check_positive("energy_tev", energy_tev)
    _checks.check_positive("relative_error", relative_error)
    n_sky = (
        model.n_realisations
        if sky_realisations is None
        else _checks.check_positive_int("sky_realisations", sky_realisations)
    )
    sky_model = dataclasses.replace(
        model,
        seed=seed,
        n_realisations=max(n_sky, 2),
        dec_min_deg=dec_min_deg,
        dec_max_deg=dec_max_deg,
        remove_ell_max=remove_ell_max,
        estimator=est,
        background=bg,
    )
    sky_model.validate()
    s = np.asarray(realisation_spectra(jnp.asarray(theta), sky_model))[:n_sky]
    ell = (
        np.arange(1 if remove_ell_max is None else remove_ell_max + 1, model.lmax + 1)
        if ells is None
        else np.asarray(ells)
    )
    if ell.ndim != 1 or ell.size == 0 or np.any(ell < 0) or np.any(ell > model.lmax) or np.any(np.diff(ell) <= 0):
        raise ValueError(
            f"ells must be increasing multipoles in [0, {model.lmax}] (the model's lmax = 2·nside − 1); got {ells!r}"
        )
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
        dec_min_deg=dec_min_deg,
        dec_max_deg=dec_max_deg,
        nside=model.nside,
        remove_ell_max=remove_ell_max,
        estimator=est,
        background=bg,
        sky_realisations=n_sky,
        synthetic=True,
        source=f"jaxcr {__version__} synthetic, theta={list(map(float, theta))}, "
        f"seed={seed}, mean of {n_sky} sky realisations",
    )


def mock_sky_spectra(
    theta,
    model: SpectrumModel,
    observatory: Observatory,
    *,
    time: float,
    amplitude: float,
    n_skies: int,
    seed: int,
    events: float | None = None,
    lmax: int | None = None,
    n_resamples: int = 16,
) -> list[ObservedSpectrum]:
    """``n_skies`` single synthetic skies at θ = (ln σ², ln ρ), each observed by ``observatory``.

    Each sky is one field realisation (keys of ``seed``, independent of any campaign's) backtracked
    from every pixel of ``model.nside`` to ΩT = ``time``; its relative intensity
    δI = sqrt(a)·r(−T)·ĝ (Eq. 7, a = (|∇n/n| r_L)² = ``amplitude``) is observed as the observatory
    does (:func:`jaxcr.observatory.mock_observation`: ``events`` Poisson counts in its band, the
    background estimated by its method, e.g. time-scrambling) and turned into a spectrum file by
    :func:`jaxcr.observatory.spectrum_from_maps` (its estimator and ℓ ≤ L removal, errors from
    ``n_resamples`` Poisson resamplings), ℓ = 1..``lmax``. The simulated sky's own pixel noise
    (Eq. 12, measured on the map: :func:`jaxcr.inference.campaign.pixel_noise_level`, times the
    analysis' noise response) is subtracted, so the spectrum is that of the continuous sky.
    """
    from .inference.artifact import noise_transfer
    from .inference.campaign import Analysis, backtracked_maps
    from .observatory import mock_observation, spectrum_from_maps
    from .random import realisation_keys

    theta = np.asarray(theta, dtype=float)
    if theta.shape != (2,) or not np.all(np.isfinite(theta)):
        raise ValueError(f"theta must be finite (ln sigma2, ln rho), shape (2,); got {theta!r}")
    _checks.check_positive("amplitude", amplitude)
    _checks.check_positive("time", time)
    _checks.check_positive_int("n_skies", n_skies)
    _checks.check_seed("seed", seed)
    model = model.resolved(theta)
    analysis = Analysis.of_observatory(observatory, "data")
    maps, noise = backtracked_maps(model, theta, realisation_keys(seed, n_skies), [float(time)])
    maps, noise = maps[:, 0], noise[:, 0]  # (n, P), (n,)
    t_ell, _ = noise_transfer(analysis, model.nside)
    out = []
    for i, (m, n_hat) in enumerate(zip(maps, noise)):
        obs = mock_observation(np.sqrt(amplitude) * (m - m.mean()), observatory, events=events, seed=seed + 1 + i)
        spec = spectrum_from_maps(
            obs.counts,
            obs.background,
            weights=obs.weights,
            dec_min_deg=observatory.dec_min_deg,
            dec_max_deg=observatory.dec_max_deg,
            estimator=observatory.estimator,
            background_method=observatory.background,
            remove_ell_max=observatory.remove_ell_max,
            lmax=lmax,
            n_resamples=n_resamples,
            seed=seed + 1 + i,
            observatory=observatory.name,
            energy_tev=observatory.median_energy_tev,
            source=f"jaxcr {__version__} mock sky {i} of seed {seed}: theta={theta.tolist()}, ΩT={time:g}, "
            f"a={amplitude:g}, nside {model.nside}, pixel noise {amplitude * n_hat:.3g} removed",
        )
        out.append(dataclasses.replace(spec, cl=spec.cl - amplitude * n_hat * t_ell[spec.ell], synthetic=True))
    return out
