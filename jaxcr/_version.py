"""The installed version of jaxcr (from the package metadata; written once, in pyproject.toml)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jaxcr")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
