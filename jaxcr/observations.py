"""Observed angular power spectra: a documented file format, a validating loader, presets.

File format (``.txt``/``.csv``, UTF-8). Metadata lines start with ``#`` and read ``# key: value``;
then one header row naming the columns, then one row per multipole, comma-separated::

    # jaxcr-spectrum: 1
    # observatory: IceCube
    # energy_tev: 20
    # noise_level: 2.5e-11
    # dec_min_deg: -90
    # dec_max_deg: -23.6
    # nside: 64
    # remove_ell_max: 3
    # sky_realisations: 1
    # synthetic: false
    # source: Aartsen et al. 2013, Table N
    ell,cl,sigma
    1,1.2e-7,3e-9
    ...

Required columns: ``ell`` (integer multipole, strictly increasing, ≥ 0), ``cl`` (C_ℓ, finite,
dimensionless relative-intensity power as in healpy ``anafast``), ``sigma`` (1σ error, finite,
> 0). Required metadata: ``observatory``, ``energy_tev`` (median energy), ``noise_level`` (the
shot-noise C_ℓ level N, Sec. 1), ``dec_min_deg``/``dec_max_deg`` (the declination band of the
field of view used as the mask). Optional: ``nside`` (default 64), ``remove_ell_max`` (ℓ ≤ L
structure the analysis subtracted; default none), ``sky_realisations`` (how many independent
turbulence realisations the spectrum averages: 1, the default, for an observed sky, which is one
realisation of the local turbulence and so carries the full cosmic variance; a synthetic
spectrum made as the mean of R skies says R), ``synthetic`` (default false), ``source``.
``sigma`` is the *measurement* error only (shot noise, systematics): the sky-to-sky (cosmic)
variance, correlated across ℓ, is computed by the fit from the model's realisations
(:func:`jaxcr.fit.chi2_profiled`). Any error names the file, the line and the column.

No published table of observed C_ℓ values is available in this environment, so jaxcr ships no
observed numbers: the presets below carry only the observatories' published characteristics
(the papers cited on each preset), and synthetic spectra are made with jaxcr at known parameters (marked
``synthetic: true``). Adding a real table is writing one file in this format.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import _checks, io

__all__ = ["Observatory", "OBSERVATORIES", "ObservedSpectrum", "load_spectrum", "save_spectrum", "SpectrumFileError"]


@dataclasses.dataclass(frozen=True)
class Observatory:
    """Published characteristics (the paper, Sec. 1, and the observatories' papers). Masks marked assumed: bands giving the stated f_sky."""

    name: str
    median_energy_tev: float
    f_sky: float
    dec_min_deg: float
    dec_max_deg: float
    events: float | None = None
    noise_level: float | None = None
    nside: int = 64
    lmax: int | None = None
    mask_assumed: bool = True


OBSERVATORIES = {
    "icecube": Observatory(
        "IceCube (Aartsen et al. 2013)", 20.0, 0.3, -90.0, -23.6, events=1.5e11, noise_level=2.5e-11
    ),
    "hawc": Observatory("HAWC (Abeysekara et al. 2014)", 2.0, 0.7, -30.0, 64.0, events=4.9e10, noise_level=1.8e-10),
    "hawc+icecube": Observatory(
        "HAWC + IceCube (Abeysekara et al. 2019)", 10.0, 0.93, -85.0, 70.0, lmax=40, mask_assumed=False
    ),
}


MAX_SPECTRUM_VALUE = 1e100  # χ² squares residuals over σ²: larger values overflow float64


class SpectrumFileError(ValueError):
    """A malformed spectrum file; the message names the file, line and column."""


@dataclasses.dataclass(frozen=True)
class ObservedSpectrum:
    """An observed (or synthetic) pseudo-C_ℓ spectrum with the metadata needed to model it."""

    ell: np.ndarray
    cl: np.ndarray
    sigma: np.ndarray
    observatory: str
    energy_tev: float
    noise_level: float
    dec_min_deg: float
    dec_max_deg: float
    nside: int = 64
    remove_ell_max: int | None = None
    sky_realisations: int = 1
    synthetic: bool = False
    source: str = ""

    def __post_init__(self):
        """Validate every value (a ``ValueError``/``TypeError`` names the first bad one)."""
        arrays = {}
        for name in ("ell", "cl", "sigma"):
            v = np.asarray(getattr(self, name))
            if v.ndim != 1 or v.size == 0:
                raise ValueError(f"{name} must be a non-empty 1-D array; got shape {v.shape}")
            if np.iscomplexobj(v) or not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
                raise TypeError(f"{name} must hold real numbers; got dtype {v.dtype}")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"{name} must be finite; got {v[~np.isfinite(v)][0]}")
            arrays[name] = v
        if not len(arrays["ell"]) == len(arrays["cl"]) == len(arrays["sigma"]):
            raise ValueError(
                f"ell, cl and sigma must have the same length; got {len(arrays['ell'])}, "
                f"{len(arrays['cl'])}, {len(arrays['sigma'])}"
            )
        ell = arrays["ell"]
        if np.any(ell != np.round(ell)) or np.any(ell < 0) or np.any(np.diff(ell) <= 0):
            raise ValueError(f"ell must be strictly increasing integers >= 0; got {ell.tolist()}")
        if np.any(arrays["sigma"] <= 0):
            raise ValueError("sigma (the 1σ measurement errors) must be > 0")
        for name in ("cl", "sigma"):
            if np.max(np.abs(arrays[name])) > MAX_SPECTRUM_VALUE:
                raise ValueError(
                    f"{name} reaches {np.max(np.abs(arrays[name])):.3g}: values above "
                    f"{MAX_SPECTRUM_VALUE:g} overflow χ² (relative-intensity C_ℓ are ≪ 1)"
                )
        object.__setattr__(self, "ell", ell.astype(int))
        object.__setattr__(self, "cl", arrays["cl"].astype(float))
        object.__setattr__(self, "sigma", arrays["sigma"].astype(float))
        if not isinstance(self.observatory, str) or not self.observatory:
            raise ValueError(f"observatory must be a non-empty name; got {self.observatory!r}")
        _checks.check_positive("energy_tev", self.energy_tev)
        _checks.check_nonnegative("noise_level", self.noise_level)
        for name in ("dec_min_deg", "dec_max_deg"):
            _checks.check_finite(name, getattr(self, name))
        if not -90.0 <= self.dec_min_deg < self.dec_max_deg <= 90.0:
            raise ValueError(f"need -90 <= dec_min_deg < dec_max_deg <= 90; got {self.dec_min_deg}, {self.dec_max_deg}")
        _checks.check_power_of_two("nside", self.nside)
        if self.remove_ell_max is not None and (
            isinstance(self.remove_ell_max, bool)
            or not isinstance(self.remove_ell_max, (int, np.integer))
            or self.remove_ell_max < 0
        ):
            raise ValueError(f"remove_ell_max must be None or an integer >= 0; got {self.remove_ell_max!r}")
        _checks.check_positive_int("sky_realisations", self.sky_realisations)
        _checks.check_bool("synthetic", self.synthetic)

    def metadata(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("ell", "cl", "sigma")}


_REQUIRED_META: dict[str, Callable] = {
    "observatory": str,
    "energy_tev": float,
    "noise_level": float,
    "dec_min_deg": float,
    "dec_max_deg": float,
}
_OPTIONAL_META: dict[str, Callable] = {
    "nside": int,
    "remove_ell_max": int,
    "sky_realisations": int,
    "synthetic": lambda v: {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}[
        v.strip().lower()
    ],
    "source": str,
    "jaxcr-spectrum": str,
}
_CONVERTERS: dict[str, Callable] = {**_REQUIRED_META, **_OPTIONAL_META}
_COLUMNS = ("ell", "cl", "sigma")


def load_spectrum(path) -> ObservedSpectrum:
    """Read and validate a spectrum file (format in the module docstring)."""
    path = Path(path)
    meta, header, rows = {}, None, []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpectrumFileError(
            f"{path}: not a UTF-8 text file (a spectrum file is CSV text; see jaxcr.observations for the format)"
        ) from None
    except OSError as err:
        raise SpectrumFileError(f"{path}: cannot be read: {err.strerror}") from None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if ":" in line:
                key, value = line[1:].split(":", 1)
                key = key.strip()
                if key in _REQUIRED_META or key in _OPTIONAL_META:
                    conv: Callable = _CONVERTERS[key]
                    try:
                        meta[key] = conv(value.strip())
                    except (ValueError, KeyError):
                        raise SpectrumFileError(
                            f"{path}: line {lineno}: metadata {key!r} has an invalid value {value.strip()!r}"
                        ) from None
            continue
        cells = [c.strip() for c in line.split(",")]
        if header is None:
            header = cells
            missing = [c for c in _COLUMNS if c not in header]
            if missing:
                raise SpectrumFileError(
                    f"{path}: line {lineno}: missing column(s) {', '.join(missing)} in header {header}; "
                    f"required: {', '.join(_COLUMNS)}"
                )
            continue
        if len(cells) != len(header):
            raise SpectrumFileError(f"{path}: line {lineno}: {len(cells)} values for {len(header)} columns {header}")
        rows.append((lineno, {name: cells[header.index(name)] for name in _COLUMNS}))
    if header is None or not rows:
        raise SpectrumFileError(
            f"{path}: no data rows (expected a header row '{','.join(_COLUMNS)}' and one row per ℓ)"
        )
    missing = [k for k in _REQUIRED_META if k not in meta]
    if missing:
        raise SpectrumFileError(
            f"{path}: missing metadata {', '.join(missing)} (lines '# key: value' before the header)"
        )
    ell: list[int] = []
    cl: list[float] = []
    sigma: list[float] = []
    for lineno, row in rows:
        values = {}
        for name in _COLUMNS:
            try:
                values[name] = float(row[name])
            except ValueError:
                raise SpectrumFileError(
                    f"{path}: line {lineno}, column {name!r}: not a number: {row[name]!r}"
                ) from None
            if not math.isfinite(values[name]):
                raise SpectrumFileError(f"{path}: line {lineno}, column {name!r}: non-finite value {row[name]!r}")
        if values["ell"] != int(values["ell"]) or values["ell"] < 0:
            raise SpectrumFileError(
                f"{path}: line {lineno}, column 'ell': must be a non-negative integer, got {row['ell']!r}"
            )
        if values["sigma"] <= 0:
            raise SpectrumFileError(f"{path}: line {lineno}, column 'sigma': must be > 0, got {row['sigma']!r}")
        if ell and values["ell"] <= ell[-1]:
            raise SpectrumFileError(
                f"{path}: line {lineno}, column 'ell': multipoles must be strictly increasing "
                f"(ℓ = {int(values['ell'])} after ℓ = {ell[-1]})"
            )
        ell.append(int(values["ell"]))
        cl.append(values["cl"])
        sigma.append(values["sigma"])
    if not meta["dec_min_deg"] < meta["dec_max_deg"]:
        raise SpectrumFileError(f"{path}: metadata dec_min_deg must be < dec_max_deg")
    if meta.get("sky_realisations", 1) < 1:
        raise SpectrumFileError(f"{path}: metadata sky_realisations must be >= 1, got {meta['sky_realisations']}")
    meta.pop("jaxcr-spectrum", None)
    try:
        return ObservedSpectrum(ell=np.array(ell), cl=np.array(cl), sigma=np.array(sigma), **meta)
    except (ValueError, TypeError) as err:
        raise SpectrumFileError(f"{path}: {err}") from None


def save_spectrum(spectrum: ObservedSpectrum, path) -> Path:
    """Write a spectrum in the documented format (atomically)."""
    lines = ["# jaxcr-spectrum: 1"]
    for key, value in spectrum.metadata().items():
        if value is None or value == "":
            continue
        lines.append(f"# {key}: {str(value).lower() if isinstance(value, bool) else value}")
    lines.append(",".join(_COLUMNS))
    lines += [f"{int(ell_)},{c:.17g},{s:.17g}" for ell_, c, s in zip(spectrum.ell, spectrum.cl, spectrum.sigma)]
    return io.atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8"))
