"""A campaign's realisations as observed skies: the model's own draws of one sky's spectrum.

At a design point θ_k every realisation r is one sky that the model itself made. Its spectrum less
the pixel noise's mean, c_r = Ĉ_r − N̂_r t_ℓ (t_ℓ the analysis' response to white noise,
:meth:`jaxcr.analysis.Analysis.noise_response`), is a sky of unit amplitude a = (|∇n/n| r_L)² = 1;
its measurement error is the pixel noise's fluctuation, σ_ℓ² = v_ℓ N̂_r² (1 + 2 c_r/(t_ℓ N̂_r))
(:func:`jaxcr.analysis.white_noise_variance`), at least 10⁻³ c_r. Fitted as skies, they show what
the estimator does where the data come from the model (and, from a campaign of another seed than
the artifact's, out of sample); :func:`jaxcr.inference.joint_region.region_thresholds` calibrates
the joint region of (σ², ρ) on them.
"""

from __future__ import annotations

import numpy as np

from ..analysis import white_noise_variance
from ..observations import ObservedSpectrum
from .artifact import EmulatorArtifact
from .campaign import Campaign

__all__ = ["point_spectra", "realisation_skies", "MIN_RELATIVE_SIGMA"]

MIN_RELATIVE_SIGMA = 1e-3  # a realisation's σ_ℓ is at least this fraction of its c_ℓ


def point_spectra(campaign: Campaign, artifact: EmulatorArtifact, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Design point k's realisations at the artifact's time there: Ĉ − N̂ t_ℓ (R, lmax + 1), each
    map's spectrum less its pixel noise's mean, and N̂ (R,). Raises ValueError when the campaign
    lacks the artifact's analysis or does not store its time at that point."""
    arrays, _ = campaign.load_point(k)  # (R, T, lmax + 1) and (R, T)
    if f"cl_{artifact.analysis.name}" not in arrays:
        raise ValueError(f"{campaign.folder} holds no spectra of the artifact's analysis {artifact.analysis.name!r}")
    wanted = artifact.time_at(campaign.spec.values(k))
    times = np.asarray(campaign.spec.point_times(k))
    j = int(np.argmin(np.abs(times / wanted - 1)))
    if abs(times[j] / wanted - 1) > 1e-9:
        raise ValueError(
            f"design point {k} of {campaign.folder} stores ΩT = {times.round(4).tolist()}, not the artifact's "
            f"{wanted:.6g} there: lengthen the point (jaxcr campaign lengthen) or store that time"
        )
    t_ell, _ = artifact.analysis.noise_response(campaign.spec.model.nside)
    noise = arrays["pixel_noise"][:, j]
    return arrays[f"cl_{artifact.analysis.name}"][:, j] - noise[:, None] * t_ell, noise


def realisation_skies(campaign: Campaign, artifact: EmulatorArtifact, k: int) -> list[ObservedSpectrum]:
    """Design point k's realisations at the artifact's time there, as skies of unit amplitude on the
    artifact's multipoles (module docstring)."""
    corrected, noise = point_spectra(campaign, artifact, k)
    t_ell, v_ell = artifact.analysis.noise_response(campaign.spec.model.nside)
    ells = np.asarray(artifact.ells)
    c = corrected[:, ells]
    variance = white_noise_variance(c, noise[:, None], t_ell[ells], v_ell[ells])
    sigma = np.sqrt(np.maximum(variance, (MIN_RELATIVE_SIGMA * c) ** 2))
    return [
        ObservedSpectrum(
            ell=ells,
            cl=row,
            sigma=sd,
            observatory=artifact.analysis.name,
            energy_tev=10.0,
            noise_level=0.0,
            analysis=artifact.analysis,
            nside=campaign.spec.model.nside,
            source=f"realisation {r} of design point {k} of {campaign.folder}",
        )
        for r, (row, sd) in enumerate(zip(c, sigma))
    ]
