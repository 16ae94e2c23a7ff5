"""jaxcr: a JAX toolkit for the power spectrum of cosmic-ray arrival directions.

Data flow: parameters → field → trajectories → maps → spectra → statistics → fit.
"""

__version__ = "0.1.0"

from . import units
from .dynamics import Boris, Trajectories, backtrack, continue_backtrack, default_step, lorentz_vector_field, track
from .turbulence import (
    PlaneWaveTurbulence,
    TurbulenceNoise,
    TurbulenceParameters,
    mode_amplitudes,
    mode_wavenumbers,
    spectral_weight,
)
from .sky import declination_band_mask, liouville_map, pixel_directions, relative_intensity
from .spectra import angular_power_spectrum, map_to_alm
from .simulate import EnsembleConfig, log_time_grid, run_ensemble
from . import chaos, diffusion, distributed, fit, io, observations, plot, sky, spectra, theory

__all__ = [
    "__version__",
    "units",
    "Boris",
    "Trajectories",
    "backtrack",
    "continue_backtrack",
    "default_step",
    "lorentz_vector_field",
    "track",
    "PlaneWaveTurbulence",
    "TurbulenceNoise",
    "TurbulenceParameters",
    "mode_amplitudes",
    "mode_wavenumbers",
    "spectral_weight",
    "declination_band_mask",
    "liouville_map",
    "pixel_directions",
    "relative_intensity",
    "angular_power_spectrum",
    "map_to_alm",
    "EnsembleConfig",
    "log_time_grid",
    "run_ensemble",
    "chaos",
    "diffusion",
    "distributed",
    "fit",
    "io",
    "observations",
    "plot",
    "sky",
    "spectra",
    "theory",
]
