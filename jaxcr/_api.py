"""Everything ``jaxcr`` exports, imported at once: ``jaxcr/__init__.py`` loads this module on the
first access to one of its names, so that ``import jaxcr`` (and ``jaxcr --help``) stays fast."""

from . import (
    analysis as analysis,
)
from . import (
    chaos as chaos,
)
from . import (
    conventions as conventions,
)
from . import (
    diffusion as diffusion,
)
from . import (
    distributed as distributed,
)
from . import (
    forward as forward,
)
from . import (
    inference as inference,
)
from . import (
    io as io,
)
from . import (
    native as native,
)
from . import (
    observations as observations,
)
from . import (
    observatory as observatory,
)
from . import (
    pair_model as pair_model,
)
from . import (
    parametrisation as parametrisation,
)
from . import (
    plot as plot,
)
from . import (
    random as random,
)
from . import (
    sky as sky,
)
from . import (
    skymaps as skymaps,
)
from . import (
    spectra as spectra,
)
from . import (
    spectrum_model as spectrum_model,
)
from . import (
    synthetic as synthetic,
)
from . import (
    theory as theory,
)
from . import (
    turbulence_model as turbulence_model,
)
from . import (
    units as units,
)
from ._version import __version__ as __version__
from .analysis import Analysis as Analysis
from .backtracking import (
    Trajectories as Trajectories,
)
from .backtracking import (
    backtrack as backtrack,
)
from .backtracking import (
    continue_backtrack as continue_backtrack,
)
from .backtracking import (
    track as track,
)
from .dynamics import Boris as Boris
from .dynamics import LorentzForce as LorentzForce
from .dynamics import default_step as default_step
from .field import (
    AbstractField as AbstractField,
)
from .field import (
    FieldPrecision as FieldPrecision,
)
from .field import (
    ModeSumLayout as ModeSumLayout,
)
from .field import (
    UniformField as UniformField,
)
from .forward import SkyModel as SkyModel
from .parametrisation import Parameter as Parameter
from .parametrisation import Parametrisation as Parametrisation
from .parametrisation import Transform as Transform
from .parametrisation import plane_wave_parametrisation as plane_wave_parametrisation
from .simulate import EnsembleConfig as EnsembleConfig
from .simulate import log_time_grid as log_time_grid
from .simulate import run_ensemble as run_ensemble
from .sky import (
    declination_band_mask as declination_band_mask,
)
from .sky import (
    liouville_map as liouville_map,
)
from .sky import (
    pixel_directions as pixel_directions,
)
from .sky import (
    relative_intensity as relative_intensity,
)
from .spectra import angular_power_spectrum as angular_power_spectrum
from .spectra import map_to_alm as map_to_alm
from .spectrum_model import SpectrumModel as SpectrumModel
from .turbulence import (
    PlaneWaveTurbulence as PlaneWaveTurbulence,
)
from .turbulence import (
    TurbulenceNoise as TurbulenceNoise,
)
from .turbulence import (
    TurbulenceParameters as TurbulenceParameters,
)
from .turbulence import (
    mode_amplitudes as mode_amplitudes,
)
from .turbulence import (
    mode_wavenumbers as mode_wavenumbers,
)
from .turbulence import (
    spectral_weight as spectral_weight,
)
from .turbulence_model import AbstractTurbulenceModel as AbstractTurbulenceModel
from .turbulence_model import PlaneWaveGJ99 as PlaneWaveGJ99

__all__ = sorted(name for name in dir() if not name.startswith("_") or name == "__version__")
