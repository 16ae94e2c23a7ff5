"""Inference: fit named model parameters to observed angular power spectra.

The path: a campaign of model spectra on a design of named-parameter points
(:class:`Campaign`, :class:`CampaignSpec`; run by :func:`run_campaign`, :func:`slurm_script` or
Dask), condensed into an emulator artifact (:func:`build_artifact`, :class:`EmulatorArtifact`),
fitted to one observed sky (:func:`fit_sky`) by the one fit driver
(:func:`maximise_likelihood`) on a likelihood (:class:`AbstractLikelihood`: :class:`LogNormalSky`,
:class:`GaussianSky`, :class:`JointLikelihood`), with one result type (:class:`FitResult`; the joint region of the two parameters,
:mod:`jaxcr.inference.joint_region`, with critical values calibrated on a campaign's realisations by
:func:`region_thresholds`) and a Fisher forecast on the same likelihood (:func:`expected_precision`). Gradient estimators of the
chaotic model spectrum are research tools in :mod:`jaxcr.inference.experimental`.
"""

from .artifact import EmulatorArtifact as EmulatorArtifact
from .artifact_build import artifact_from_spectra as artifact_from_spectra
from .artifact_build import build_artifact as build_artifact
from .campaign import Campaign as Campaign
from .campaign import CampaignSpec as CampaignSpec
from .emulator import SpectrumEmulator as SpectrumEmulator
from .fit import FitOptions as FitOptions
from .fit import LikelihoodFit as LikelihoodFit
from .fit import maximise_likelihood as maximise_likelihood
from .joint_fit import fit_skies as fit_skies
from .joint_fit import joint_sky_likelihood as joint_sky_likelihood
from .joint_region import RegionThresholds as RegionThresholds
from .likelihood import AbstractLikelihood as AbstractLikelihood
from .likelihood import AbstractSkyLikelihood as AbstractSkyLikelihood
from .likelihood import GaussianSky as GaussianSky
from .likelihood import JointLikelihood as JointLikelihood
from .likelihood import LikelihoodForm as LikelihoodForm
from .likelihood import LogNormalSky as LogNormalSky
from .likelihood import OffsetLogNormalSky as OffsetLogNormalSky
from .likelihood import Reparametrised as Reparametrised
from .precision import describe_residuals as describe_residuals
from .precision import expected_joint_precision as expected_joint_precision
from .precision import expected_precision as expected_precision
from .precision import fisher_information as fisher_information
from .precision import residuals_at_truth as residuals_at_truth
from .region_calibration import region_thresholds as region_thresholds
from .results import FitResult as FitResult
from .scheduling import run_campaign as run_campaign
from .scheduling import slurm_script as slurm_script
from .sky_fit import fit_sky as fit_sky
from .sky_fit import sky_likelihood as sky_likelihood
