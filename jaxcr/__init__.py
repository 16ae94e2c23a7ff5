"""jaxcr: a JAX toolkit for the power spectrum of cosmic-ray arrival directions.

Data flow: parameters → field → trajectories → maps → spectra → statistics → fit.
"""

__version__ = "0.1.0"

from . import units
from .dynamics import Boris, Trajectories, backtrack, default_step, lorentz_vector_field, track
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
