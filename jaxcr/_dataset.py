"""The schema of an ensemble run's Dataset: dimensions, units and long names of every variable,
and the attributes every saved result carries (parameters, seed, versions, time, normalisation).

Units are CF-style strings: "1" for dimensionless quantities; jaxcr's internal units where
physical ones do not apply (lengths in Larmor radii "r_L", times in "1/Omega"; c = 1).
"""

from __future__ import annotations

import datetime
import importlib.metadata

import numpy as np

DIFFUSION_UNITS = "r_L^2 Omega (r_L c)"
SPECTRUM_UNITS = "1"

#: name → (dims, units, long_name)
VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "cl": (
        ("time", "realisation", "gradient", "ell"),
        SPECTRUM_UNITS,
        "angular power spectrum C_l of the relative-intensity map of each realisation (Eq. 1)",
    ),
    "cl_mean": (("time", "gradient", "ell"), SPECTRUM_UNITS, "ensemble-averaged angular power spectrum <C_l>"),
    "cl_sem": (("time", "gradient", "ell"), SPECTRUM_UNITS, "standard error of <C_l> over realisations"),
    "cl_standard_diffusion": (
        ("time", "gradient", "ell"),
        SPECTRUM_UNITS,
        "C_l of the realisation-averaged map (standard-diffusion prediction, Fig. 2 magenta)",
    ),
    "noise_level": (("time", "gradient"), SPECTRUM_UNITS, "shot-noise level of the pixel sky (Eq. 12)"),
    "standard_diffusion_dipole_eq6": (
        ("time", "gradient"),
        SPECTRUM_UNITS,
        "standard-diffusion dipole C_1 = 4 pi |K g|^2 with the Einstein K (Eq. 6)",
    ),
    "standard_diffusion_dipole_eq6_green_kubo": (
        ("time", "gradient"),
        SPECTRUM_UNITS,
        "standard-diffusion dipole C_1 = 4 pi |K g|^2 with the Green-Kubo K (Eq. 6)",
    ),
    "sum_rule_lhs": (("time", "gradient"), "1", "(1/4 pi) sum_{1 <= l <= lmax} (2l+1) <C_l> (Eq. 8, left side)"),
    "sum_rule_lhs_noise_corrected": (
        ("time", "gradient"),
        "1",
        "Eq. 8 left side with the modes above lmax added at the high-l level",
    ),
    "sum_rule_rhs": (("time", "gradient"), "1", "2 T g^T Ks g (Eq. 8, right side)"),
    "map_variance": (("time", "gradient"), "1", "pixel variance of the relative-intensity maps (Parseval sum, all l)"),
    "diffusion_tensor": (("time", "i", "j"), DIFFUSION_UNITS, "diffusion tensor K = <dr dr>/2T (Einstein)"),
    "diffusion_tensor_sem": (("time", "i", "j"), DIFFUSION_UNITS, "standard error of K over realisations"),
    "diffusion_tensor_green_kubo": (("time", "i", "j"), DIFFUSION_UNITS, "diffusion tensor, Green-Kubo estimate"),
    "diffusion_tensor_green_kubo_sem": (
        ("time", "i", "j"),
        DIFFUSION_UNITS,
        "standard error of the Green-Kubo K over realisations",
    ),
    "relative_diffusion_tensor": (("time", "i", "j"), DIFFUSION_UNITS, "relative diffusion tensor Ks (Eq. 9)"),
    "relative_diffusion_tensor_sem": (("time", "i", "j"), DIFFUSION_UNITS, "standard error of Ks over realisations"),
    "liouville_cl": (
        ("time", "realisation", "ell"),
        SPECTRUM_UNITS,
        "C_l of the Liouville map f(p(-T)) of the initial dipole (Sec. 2)",
    ),
    "liouville_sum": (("time", "realisation"), "1", "(1/4 pi) sum_l (2l+1) C_l of the Liouville map (Eq. 3)"),
    "liouville_mean_square": (("time", "realisation"), "1", "pixel mean of f^2 of the Liouville map (all l)"),
}
COORDINATES = {
    "time": ("1/Omega", "backtracking time Omega T"),
    "realisation": ("1", "field realisation index"),
    "gradient": ("1", "name of the cosmic-ray gradient"),
    "ell": ("1", "multipole l"),
    "i": ("1", "Cartesian component (frame of B0 along z unless configured)"),
    "j": ("1", "Cartesian component"),
}
NORMALISATION = (
    "relative intensity dI = (r(-T) - 3 p(-T).K).g (Eq. 5) or r(-T).g (Eq. 7) with g = gradient_vector in 1/r_L; "
    "for the default unit vectors |grad n/n| = 1/r_L; C_l scale as |g|^2 r_L^2"
)
DEPENDENCIES = ("jax", "jaxlib", "diffrax", "equinox", "optax", "numpy", "healpy", "s2fft", "xarray", "scipy")


def dependency_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    out = {}
    for name in DEPENDENCIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance() -> dict[str, str]:
    """Attributes every saved result carries besides its parameters: versions and creation time."""
    import json

    from ._version import __version__

    return dict(
        jaxcr_version=__version__,
        dependencies=json.dumps(dependency_versions(), sort_keys=True),
        created_utc=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )


def variable(name: str, values) -> tuple:
    """(dims, values, attrs) of a Dataset variable from the schema."""
    dims, units, long_name = VARIABLES[name]
    return dims, np.asarray(values), {"units": units, "long_name": long_name}


def coordinate(name: str, values) -> tuple:
    units, long_name = COORDINATES[name]
    return name, values, {"units": units, "long_name": long_name}
