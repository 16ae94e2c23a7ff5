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
]

from . import chaos, diffusion, io, sky, spectra, theory  # noqa: E402
from .simulate import EnsembleConfig, log_time_grid, run_ensemble  # noqa: E402
from .sky import declination_band_mask, liouville_map, pixel_directions, relative_intensity  # noqa: E402
from .spectra import angular_power_spectrum, map_to_alm  # noqa: E402

__all__ += [
    "chaos", "diffusion", "io", "sky", "spectra", "theory",
    "EnsembleConfig", "log_time_grid", "run_ensemble",
    "declination_band_mask", "liouville_map", "pixel_directions", "relative_intensity",
    "angular_power_spectrum", "map_to_alm",
]
from . import plot  # noqa: E402

__all__ += ["plot"]
