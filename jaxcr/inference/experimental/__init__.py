"""Research tools outside the supported fit path (as ``optax.contrib``): gradient estimators of
the chaotic model spectrum (:mod:`jaxcr.inference.experimental.estimators`) and the
generalised-least-squares χ² they differentiate (:mod:`jaxcr.inference.experimental.gls`).
Their interfaces may change between releases."""

from .estimators import CRN as CRN
from .estimators import PATHWISE_MAX_GROWTH as PATHWISE_MAX_GROWTH
from .estimators import SPSA as SPSA
from .estimators import GradientEstimate as GradientEstimate
from .estimators import GradientEstimator as GradientEstimator
from .estimators import Pathwise as Pathwise
from .estimators import Score as Score
from .estimators import estimate_gradient as estimate_gradient
from .gls import chi2_profiled as chi2_profiled
from .gls import gls_chi2 as gls_chi2
