"""The typed options of jaxcr's models and analyses (string enums), and how a value becomes one.

Kept apart from the modules that use them, without JAX, so that the command line can offer them
as choices without importing JAX (``jaxcr --help`` in a fraction of a second). Each is re-exported
by the module that documents its use: :mod:`jaxcr.field` (``FieldPrecision``, ``ModeSumLayout``)
and :mod:`jaxcr.conventions` (``Estimator``, ``BackgroundMethod``).
"""

from __future__ import annotations

import enum

__all__ = [
    "FieldPrecision",
    "ModeSumLayout",
    "Estimator",
    "BackgroundMethod",
    "PixelNoiseScatter",
    "SkyScatter",
    "SkyTails",
    "as_option",
    "MIN_CALIBRATION_TOYS",
]

# the fewest toys an interval calibration (jaxcr.inference.neyman.NeymanCalibration) accepts: the
# 95 % critical value from N toys has about 0.05·N toys above it, so fewer than 50 leave it to two
# or three toys; here so that the command line can refuse a smaller number before importing JAX
MIN_CALIBRATION_TOYS = 50


class FieldPrecision(enum.StrEnum):
    """How accurately the plane-wave mode sum is evaluated (:meth:`PlaneWaveTurbulence.with_precision`).

    The phases k_n·r + β_n are always formed and reduced in float64. ``FLOAT64`` (full): cos by
    a 9-term polynomial and the sum in float64, error ~1e-13 of the rms field. ``FAST``: a 7-term
    polynomial in float64, error ~1e-9 of the rms field (measured 1.3e-9 B0 for the paper's
    field, below the 4e-8 B0 of the established C++ code's SIMD cosine), ~10 % faster on CPU.
    ``FLOAT32``: cos and the sum in float32, error ~5e-7 (faster on GPUs).
    """

    FLOAT64 = "float64"
    FAST = "fast"
    FLOAT32 = "float32"


class ModeSumLayout(enum.StrEnum):
    """How the mode sum is computed (:meth:`PlaneWaveTurbulence.with_layout`); same numbers to
    rounding. NATIVE is jaxcr's C++ kernel (:mod:`jaxcr.native`, CPU only): one pass over the
    modes per particle, vectorised and threaded, 3.7x the XLA layouts on a 2-core AVX-512 CPU.
    PALLAS is jaxcr's fused GPU kernel (:mod:`jaxcr.pallas_kernel`): phases, cosines and sums in
    registers, no (particles × modes) array in memory; on other backends it runs in Pallas'
    interpreter (for tests: correct, and slow). MATMUL forms the phases k_n·r and the sum
    Σ E_n cos(·) as two matrix products (it keeps 0.1.0's CPU results bit for bit); SPLIT forms
    phases and cos as one elementwise kernel and the sum as a product; FUSED writes the sum as a
    reduction too. AUTO takes NATIVE on CPU (MATMUL, with a warning, where the kernel cannot be
    built) and PALLAS on GPU (SPLIT, with a warning, where its first compiled result does not
    match the exact sum), decided when traced (H200, N = 256, 122 880 particles: SPLIT 4.3×10⁸
    Boris particle-steps/s, MATMUL 3.2×10⁸, FUSED 3.0×10⁸; PALLAS not yet measured)."""

    AUTO = "auto"
    NATIVE = "native"
    MATMUL = "matmul"
    SPLIT = "split"
    FUSED = "fused"
    PALLAS = "pallas"


def as_option(enum_type, name: str, value):
    """``value`` as a member of ``enum_type`` (its member or its value string), else a clear error."""
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum_type)
        raise ValueError(f"{name} must be a {enum_type.__name__} or one of {allowed}; got {value!r}") from None


class Estimator(enum.StrEnum):
    """How a spectrum is estimated from a partial-sky map (module docstring)."""

    PSEUDO = "pseudo"
    FSKY = "fsky"
    K_CORRECTED = "k-corrected"


class PixelNoiseScatter(enum.StrEnum):
    """What an emulator artifact does with the fluctuations of the campaign's own pixel noise
    (Eq. 12) in its realisations' ln C_ℓ (:mod:`jaxcr.inference.pixel_noise`). ``DECONVOLVED``
    removes them from the mean and the covariance of ln C_ℓ: the model is the sky without pixel
    noise, as a real sky is. ``KEPT`` leaves them (and raises realisations pushed to or below zero
    to 10⁻³ of the mean): the scatter is then too wide and ⟨ln C_ℓ⟩ too low where the noise is
    comparable to the signal (0.3 release)."""

    DECONVOLVED = "deconvolved"
    KEPT = "kept"


class SkyScatter(enum.StrEnum):
    """The covariance of one sky's ln C_ℓ (:meth:`jaxcr.inference.emulator.SpectrumEmulator.fit_log`).
    ``POOLED``: the design points' mean, the same everywhere (the 0.3 artifacts). ``LOCAL``: the
    design points' own covariances averaged with Gaussian weights in the box coordinates about θ,
    the width chosen by leave-one-out likelihood over the points: variances and correlations across
    ℓ both follow θ.

    Building an artifact with LOCAL keeps both. Its fits still use the pooled covariance in the
    likelihood; calibrated intervals draw their toys with the local one
    (:func:`jaxcr.inference.sky_fit.sky_likelihood`). Inside the likelihood (``fit_sky(...,
    sky_scatter=LOCAL)``) the local covariance puts χ² right on mock skies but biases the fits,
    since the likelihood then draws information from how its covariance changes with θ
    (docs/fitting.md)."""

    POOLED = "pooled"
    LOCAL = "local"


class SkyTails(enum.StrEnum):
    """The distribution of one sky's ln C_ℓ about the emulated mean, with the artifact's
    covariance (:func:`jaxcr.inference.sky_fit.sky_likelihood`). ``GAUSSIAN``: a multivariate
    Gaussian. ``STUDENT_T``: a multivariate Student-t of the same covariance with ν degrees of
    freedom, given (:mod:`jaxcr.inference.tails`)."""

    GAUSSIAN = "gaussian"
    STUDENT_T = "student-t"


class BackgroundMethod(enum.StrEnum):
    """How the expected counts are known: ``TIME_SCRAMBLING`` estimates them from the data over a
    sidereal day (the declination-ring means of δI are lost); ``KNOWN`` uses the true expected
    counts (simulations, or a background model independent of the data)."""

    TIME_SCRAMBLING = "time-scrambling"
    KNOWN = "known"
