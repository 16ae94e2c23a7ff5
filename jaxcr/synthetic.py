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
from .observations import ObservedSpectrum

__all__ = ["synthetic_spectrum"]


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
