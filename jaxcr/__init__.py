"""jaxcr: a JAX toolkit for the power spectrum of cosmic-ray arrival directions.

Data flow: parameters → field → trajectories → maps → spectra → statistics → inference.
Reference: M. Ahlers, "The power spectrum of cosmic ray arrival directions", ASTRA Proc. 2,
45-49 (2015); equation numbers in the docstrings are that paper's.

Importing jaxcr switches JAX to float64 (``jax_enable_x64``): phases of 10⁴-10⁶ rad after long
backtracking and the spherical transforms are wrong in float32 (C_ℓ 8.5 % off healpy). Entry
points raise if it has been switched off again. If JAX is not imported yet, the switch is the
environment variable ``JAX_ENABLE_X64`` (which JAX reads when it is imported, and which processes
started from this one inherit).

The names below are loaded on first use (``jaxcr.backtrack`` imports JAX, healpy and the rest
then), so that ``import jaxcr`` and the ``jaxcr`` command's ``--help`` take a fraction of a second.
"""

import importlib as _importlib
import os as _os
import pkgutil as _pkgutil
import sys as _sys
from typing import TYPE_CHECKING as _TYPE_CHECKING

if "jax" in _sys.modules:
    _sys.modules["jax"].config.update("jax_enable_x64", True)
else:
    _os.environ["JAX_ENABLE_X64"] = "True"

if _TYPE_CHECKING:
    from ._api import *  # noqa: F403


_SUBMODULES = {module.name for module in _pkgutil.iter_modules([_os.path.dirname(__file__)])}


def __getattr__(name: str):
    if name in _SUBMODULES:  # `from . import spectra` inside jaxcr: the submodule itself, nothing else
        return _importlib.import_module(f".{name}", __name__)
    if name.startswith("_") and name not in ("__all__", "__version__"):
        raise AttributeError(name)
    api = _importlib.import_module("._api", __name__)
    try:
        value = getattr(api, name)
    except AttributeError:
        raise AttributeError(f"module 'jaxcr' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_importlib.import_module("._api", __name__).__all__))
