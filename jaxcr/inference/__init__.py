"""Inference: fit turbulence parameters to observed angular power spectra.

One observed sky: :mod:`~jaxcr.inference.campaign` (model spectra on a design, one task per
point), :mod:`~jaxcr.inference.scheduling` (running the tasks: process pool, SLURM, Dask),
:mod:`~jaxcr.inference.artifact` (versioned emulators with provenance), :mod:`~jaxcr.inference.sky_fit`
(the one-sky likelihood and fit, :func:`fit_sky`), :mod:`~jaxcr.inference.precision` (its
Fisher forecast).

The fits that build their own designs, one job per module: :mod:`~jaxcr.inference.model` (the forward model as a function of
θ = (ln σ², ln ρ)), :mod:`~jaxcr.inference.likelihood` (full-covariance χ² with cosmic
variance), :mod:`~jaxcr.inference.estimators` (gradient estimators that survive chaos),
:mod:`~jaxcr.inference.fisher` (Fisher algebra), :mod:`~jaxcr.inference.emulator` (a smooth
emulator of the model), :mod:`~jaxcr.inference.profile` (profile likelihoods),
:mod:`~jaxcr.inference.gradient_fit` and :mod:`~jaxcr.inference.emulator_fit` (the two fit
methods), :mod:`~jaxcr.inference.fit` (the public fits), :mod:`~jaxcr.inference.results`.
"""

from .artifact import EmulatorArtifact as EmulatorArtifact
from .artifact import build_artifact as build_artifact
from .campaign import Analysis as Analysis
from .campaign import Campaign as Campaign
from .campaign import CampaignSpec as CampaignSpec
from .campaign import design_grid as design_grid
from .emulator import SpectrumEmulator as SpectrumEmulator
from .emulator_fit import EMULATOR_BOX as EMULATOR_BOX
from .emulator_fit import EmulatorFit as EmulatorFit
from .estimators import (
    CRN as CRN,
)
from .estimators import (
    PATHWISE_MAX_GROWTH as PATHWISE_MAX_GROWTH,
)
from .estimators import (
    SPSA as SPSA,
)
from .estimators import (
    GradientEstimate as GradientEstimate,
)
from .estimators import (
    GradientEstimator as GradientEstimator,
)
from .estimators import (
    Pathwise as Pathwise,
)
from .estimators import (
    Score as Score,
)
from .estimators import (
    estimate_gradient as estimate_gradient,
)
from .fit import fit_joint as fit_joint
from .fit import fit_spectrum as fit_spectrum
from .gradient_fit import GradientFit as GradientFit
from .likelihood import chi2_profiled as chi2_profiled
from .model import (
    SpectrumModel as SpectrumModel,
)
from .model import (
    realisation_spectra as realisation_spectra,
)
from .model import (
    spectrum_covariance as spectrum_covariance,
)
from .precision import expected_precision as expected_precision
from .profile import CovarianceMode as CovarianceMode
from .profile import LikelihoodScan as LikelihoodScan
from .profile import profile_likelihood as profile_likelihood
from .results import FitResult as FitResult
from .results import SkyFitResult as SkyFitResult
from .scheduling import run_campaign as run_campaign
from .scheduling import slurm_script as slurm_script
from .sky_fit import LikelihoodForm as LikelihoodForm
from .sky_fit import fit_sky as fit_sky
