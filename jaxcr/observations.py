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
(:mod:`jaxcr.inference.likelihood`). Any error names the file, the line and the column.

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
from typing import Any

import numpy as np

from . import _checks, io
from .analysis import Analysis
from .conventions import BackgroundMethod, Estimator, shot_noise_level
from .sky import declination_band_mask

__all__ = ["Observatory", "OBSERVATORIES", "ObservedSpectrum", "load_spectrum", "save_spectrum", "SpectrumFileError"]


@dataclasses.dataclass(frozen=True)
class Observatory:
    """An observatory's published characteristics, and the estimator and background method of its spectra.

    Attributes:
        name, median_energy_tev: as published.
        f_sky: the fraction of the sky seen; ``mask_assumed``: the analysis' band is chosen to
            give the stated f_sky (equatorial declination), not the published exposure.
        analysis: how its spectra are made (:class:`jaxcr.analysis.Analysis`: band, background
            method, ℓ ≤ L removal, estimator).
        events: N_CR, the number of events of the analysis (None where not published here).
        published_noise_level: the noise level as the paper quotes it, N = 4π f_sky/N_CR, which is
            the shot noise of the f_sky-corrected spectrum (``Estimator.FSKY``), not of the
            pseudo-C_ℓ these observatories publish (f_sky times smaller).
        nside, lmax: the analysis' HEALPix resolution and largest multipole.
        sources: where each value comes from.
    """

    name: str
    median_energy_tev: float
    f_sky: float
    analysis: Analysis
    events: float | None = None
    published_noise_level: float | None = None
    nside: int = 64
    lmax: int | None = None
    mask_assumed: bool = True
    sources: str = ""

    def mask(self, nside: int | None = None):
        """The field of view at ``nside`` (default the analysis'): 1 in the declination band, else 0."""
        a = self.analysis
        return np.asarray(declination_band_mask(nside or self.nside, a.dec_min_deg, a.dec_max_deg))

    def expected_counts(self, nside: int | None = None, events: float | None = None, exposure=None):
        """Expected events per pixel: ``events`` (default the published N_CR) spread over the band in
        proportion to ``exposure`` (a map; default uniform)."""
        total = self.events if events is None else events
        if total is None:
            raise ValueError(f"{self.name}: no event number is known here; give events=...")
        _checks.check_positive("events", total)
        w = self.mask(nside)
        shape = w if exposure is None else w * np.asarray(exposure, dtype=float)
        return shape * (total / shape.sum())

    def noise_level(
        self, estimator: Estimator | str | None = None, nside: int | None = None, events: float | None = None
    ) -> float:
        """Shot-noise level of the estimator (default: that of the observatory's spectra) for uniform
        exposure in the band: 4π f_sky²/N_CR for the pseudo-C_ℓ (:func:`jaxcr.conventions.shot_noise_level`)."""
        nside = nside or self.nside
        return shot_noise_level(
            self.expected_counts(nside, events),
            self.mask(nside),
            self.analysis.estimator if estimator is None else estimator,
            self.analysis.dec_min_deg,
            self.analysis.dec_max_deg,
        )


OBSERVATORIES = {
    "icecube": Observatory(
        "IceCube (Aartsen et al. 2013)",
        20.0,
        0.3,
        Analysis("icecube", -90.0, -23.6, BackgroundMethod.TIME_SCRAMBLING),
        events=1.5e11,
        published_noise_level=2.5e-11,
        sources="events, energy, f_sky and N = 4π f_sky/N_CR as cited by Ahlers (2015), Sec. 1; band assumed to give "
        "f_sky; pseudo-C_ℓ with time-scrambled background (Aartsen et al. 2013, ApJ 765 55)",
    ),
    "hawc": Observatory(
        "HAWC (Abeysekara et al. 2014)",
        2.0,
        0.7,
        Analysis("hawc", -30.0, 64.0, BackgroundMethod.TIME_SCRAMBLING),
        events=4.9e10,
        published_noise_level=1.8e-10,
        sources="events, energy and f_sky from Abeysekara et al. 2014, ApJ 796 108 (4.6e10 events in Ahlers 2015); "
        "band assumed to give f_sky; HAWC estimates its background by direct integration over hours, "
        "modelled here as a sidereal-day time scrambling (the m = 0 modes lost)",
    ),
    "hawc+icecube": Observatory(
        "HAWC + IceCube (Abeysekara et al. 2019)",
        10.0,
        0.93,
        Analysis("hawc_icecube", -85.0, 70.0, BackgroundMethod.KNOWN, estimator=Estimator.K_CORRECTED),
        nside=64,
        lmax=40,
        mask_assumed=False,
        sources="Abeysekara et al. 2019, ApJ 871 96: band −85° < δ < 70°, nside 64, ℓ ≤ 40, C_ℓ divided by the band's K; "
        "the full relative intensity is reconstructed by a likelihood method (background treated as known)",
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
    analysis: Analysis = Analysis()
    nside: int = 64
    sky_realisations: int = 1
    synthetic: bool = False
    source: str = ""
    isotropic_mean: np.ndarray | None = None
    isotropic_sigma: np.ndarray | None = None

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
        if not isinstance(self.analysis, Analysis):
            raise TypeError(f"analysis must be an Analysis (jaxcr.analysis); got {type(self.analysis).__name__}")
        _checks.check_power_of_two("nside", self.nside)
        _checks.check_positive_int("sky_realisations", self.sky_realisations)
        _checks.check_bool("synthetic", self.synthetic)
        for name in ("isotropic_mean", "isotropic_sigma"):
            value = getattr(self, name)
            if value is not None:
                v = np.asarray(value, dtype=float)
                if v.shape != ell.shape or not np.all(np.isfinite(v)):
                    raise ValueError(f"{name} must be finite with one value per ℓ ({ell.size}); got shape {v.shape}")
                object.__setattr__(self, name, v)

    def metadata(self) -> dict:
        """Every value but the per-ℓ arrays, the analysis' settings flattened (as the file has them)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _ARRAY_FIELDS}
        analysis = out.pop("analysis").as_dict()
        analysis.pop("name")
        return out | analysis


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
    "estimator": Estimator,
    "background": BackgroundMethod,
}
_CONVERTERS: dict[str, Callable] = {**_REQUIRED_META, **_OPTIONAL_META}
_COLUMNS = ("ell", "cl", "sigma")
ANALYSIS_KEYS = ("dec_min_deg", "dec_max_deg", "background", "remove_ell_max", "estimator")  # the file's analysis
_OPTIONAL_COLUMNS = ("isotropic_mean", "isotropic_sigma")  # the spectrum of isotropic skies, mean and 1σ
_ARRAY_FIELDS = _COLUMNS + _OPTIONAL_COLUMNS


def _label(observatory: str) -> str:
    """An analysis name from an observatory's name: letters and digits, '_' for the rest."""
    return "".join(c if c.isalnum() and c.isascii() else "_" for c in observatory.lower()) or "observed"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpectrumFileError(
            f"{path}: not a UTF-8 text file (a spectrum file is CSV text; see jaxcr.observations for the format)"
        ) from None
    except OSError as err:
        raise SpectrumFileError(f"{path}: cannot be read: {err.strerror}") from None


def _metadata_line(path: Path, lineno: int, line: str, meta: dict) -> None:
    """Record a ``# key: value`` line (other comments are ignored)."""
    if ":" not in line:
        return
    key, value = line[1:].split(":", 1)
    key = key.strip()
    if key not in _CONVERTERS:
        return
    try:
        meta[key] = _CONVERTERS[key](value.strip())
    except (ValueError, KeyError):
        raise SpectrumFileError(
            f"{path}: line {lineno}: metadata {key!r} has an invalid value {value.strip()!r}"
        ) from None


def _split_lines(path: Path, text: str):
    """(metadata, header, [(line number, {column: cell})]) of a spectrum file's text."""
    meta: dict[str, Any] = {}
    header: list[str] | None = None
    rows = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            _metadata_line(path, lineno, line, meta)
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
        rows.append((lineno, {name: cells[header.index(name)] for name in _ARRAY_FIELDS if name in header}))
    if header is None or not rows:
        raise SpectrumFileError(
            f"{path}: no data rows (expected a header row '{','.join(_COLUMNS)}' and one row per ℓ)"
        )
    missing = [k for k in _REQUIRED_META if k not in meta]
    if missing:
        raise SpectrumFileError(
            f"{path}: missing metadata {', '.join(missing)} (lines '# key: value' before the header)"
        )
    return meta, header, rows


def _row_values(path: Path, lineno: int, row: dict, names, previous_ell: int | None) -> dict:
    """One data row's numbers, each checked (finite; ℓ a non-negative increasing integer; σ > 0)."""
    values = {}
    for name in names:
        try:
            values[name] = float(row[name])
        except ValueError:
            raise SpectrumFileError(f"{path}: line {lineno}, column {name!r}: not a number: {row[name]!r}") from None
        if not math.isfinite(values[name]):
            raise SpectrumFileError(f"{path}: line {lineno}, column {name!r}: non-finite value {row[name]!r}")
    if values["ell"] != int(values["ell"]) or values["ell"] < 0:
        raise SpectrumFileError(
            f"{path}: line {lineno}, column 'ell': must be a non-negative integer, got {row['ell']!r}"
        )
    if values["sigma"] <= 0:
        raise SpectrumFileError(f"{path}: line {lineno}, column 'sigma': must be > 0, got {row['sigma']!r}")
    if previous_ell is not None and values["ell"] <= previous_ell:
        raise SpectrumFileError(
            f"{path}: line {lineno}, column 'ell': multipoles must be strictly increasing "
            f"(ℓ = {int(values['ell'])} after ℓ = {previous_ell})"
        )
    return values


def load_spectrum(path) -> ObservedSpectrum:
    """Read and validate a spectrum file (format in the module docstring)."""
    path = Path(path)
    meta, header, rows = _split_lines(path, _read_text(path))
    names = _COLUMNS + tuple(name for name in _OPTIONAL_COLUMNS if name in header)
    columns: dict[str, list[float]] = {name: [] for name in names}
    for lineno, row in rows:
        previous = int(columns["ell"][-1]) if columns["ell"] else None
        for name, value in _row_values(path, lineno, row, names, previous).items():
            columns[name].append(value)
    if not meta["dec_min_deg"] < meta["dec_max_deg"]:
        raise SpectrumFileError(f"{path}: metadata dec_min_deg must be < dec_max_deg")
    if meta.get("sky_realisations", 1) < 1:
        raise SpectrumFileError(f"{path}: metadata sky_realisations must be >= 1, got {meta['sky_realisations']}")
    meta.pop("jaxcr-spectrum", None)
    try:
        settings = {key: meta.pop(key) for key in ANALYSIS_KEYS if key in meta}
        analysis = Analysis(_label(meta["observatory"]), **settings)
        arrays: dict[str, Any] = {name: np.array(v) for name, v in columns.items()}
        arrays["ell"] = arrays["ell"].astype(int)
        return ObservedSpectrum(analysis=analysis, **arrays, **meta)
    except (ValueError, TypeError) as err:
        raise SpectrumFileError(f"{path}: {err}") from None


def save_spectrum(spectrum: ObservedSpectrum, path) -> Path:
    """Write a spectrum in the documented format (atomically)."""
    lines = ["# jaxcr-spectrum: 1"]
    for key, value in spectrum.metadata().items():
        if value is None or value == "":
            continue
        lines.append(f"# {key}: {str(value).lower() if isinstance(value, bool) else value}")
    columns = [name for name in _ARRAY_FIELDS if getattr(spectrum, name) is not None]
    lines.append(",".join(columns))
    table = [np.asarray(getattr(spectrum, name)) for name in columns]
    lines += [",".join([str(int(row[0]))] + [f"{x:.17g}" for x in row[1:]]) for row in zip(*table)]
    return io.atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8"))
