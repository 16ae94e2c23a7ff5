"""The emulator artifacts shipped with jaxcr (``jaxcr/data``) and the checks on an artifact path
a user names: which artifact serves an observed spectrum's analysis.

The defaults, ``jaxcr/data/<analysis>.npz`` (σ² 0.3-3, r_L/λ_c 0.05-0.2), serve every spectrum of
their analysis. Other boxes live in subfolders, ``jaxcr/data/<box>/<analysis>.npz``, named
``<analysis>-<box>`` (``jaxcr fit SPECTRUM --artifact <analysis>-<box>``): ``icecube-wide`` and
``hawc-wide`` span σ² 0.3-6 and r_L/λ_c 0.01-0.2 (fewer multipoles: ℓ ≤ 11 and ℓ ≤ 9)."""

from __future__ import annotations

from pathlib import Path

from .. import _checks
from ..analysis import Analysis
from .artifact import EmulatorArtifact

__all__ = [
    "check_artifact_path",
    "shipped_artifacts",
    "shipped_artifact_for",
    "shipped_artifact_names",
    "shipped_beyond",
]


def check_artifact_path(path, name: str = "--artifact") -> Path:
    """The artifact file ``path``, or the shipped artifact of that name (:func:`shipped_artifact_names`);
    a ``ValueError`` names the option or parameter (``name``) and the shipped ones and says how to make another."""
    path = Path(path)
    named = shipped_artifact_names()
    if not path.is_file() and str(path) in named:
        path = named[str(path)]
    if not path.is_file():
        raise ValueError(
            f"{name} {str(path)!r} does not exist and is not a shipped artifact ({', '.join(named)}): build one "
            f"with `jaxcr campaign artifact CAMPAIGN_FOLDER --out {path}`"
        )
    _checks.check_positive_int("artifact size", path.stat().st_size)
    return path


SHIPPED = Path(__file__).resolve().parent.parent / "data"  # the artifacts shipped with jaxcr (jaxcr/data/*.npz)


def shipped_artifacts() -> list[Path]:
    """The emulator artifacts shipped with the package (``jaxcr/data``), sorted by name."""
    return sorted(SHIPPED.glob("*.npz"))


def shipped_artifact_names() -> dict[str, Path]:
    """Every shipped artifact by name: ``<analysis>`` for the defaults, ``<analysis>-<box>`` for
    ``jaxcr/data/<box>/<analysis>.npz``."""
    named = {p.stem: p for p in shipped_artifacts()}
    return named | {f"{p.stem}-{p.parent.name}": p for p in sorted(SHIPPED.glob("*/*.npz"))}


def shipped_artifact_for(analysis: Analysis) -> EmulatorArtifact:
    """The shipped artifact made for ``analysis`` (same band, background method, ℓ ≤ L removal and
    estimator); a ``ValueError`` lists the shipped ones and says how to build another."""
    found = [EmulatorArtifact.load(p) for p in shipped_artifacts()]
    for artifact in found:
        if not artifact.analysis.mismatch(analysis):
            return artifact
    names = ", ".join(
        f"{a.analysis.name} ({a.analysis.dec_min_deg:g}° < δ < {a.analysis.dec_max_deg:g}°)" for a in found
    )
    raise ValueError(
        f"no shipped artifact is made for this spectrum's analysis ({analysis.as_dict()}); shipped: {names or 'none'}. "
        "Build one: `jaxcr campaign create FOLDER --observatory ...`, `jaxcr campaign run FOLDER`, "
        "`jaxcr campaign artifact FOLDER --out emulator.npz`, then `jaxcr fit SPECTRUM --artifact emulator.npz`"
    )


def shipped_beyond(artifact: EmulatorArtifact, name: str, low: bool) -> list[str]:
    """The shipped artifacts of ``artifact``'s analysis whose box reaches beyond its lower (``low``)
    or upper edge in parameter ``name``, as "<name> (<parameter> <low>-<high>)" (for the warning of
    a fit on that edge; none for a parameter the artifact does not have, e.g. a joint fit's λ_c)."""
    if name not in artifact.parameters.names:
        return []
    here = artifact.parameters[name]
    out = []
    for label, path in shipped_artifact_names().items():
        other = EmulatorArtifact.load(path)
        if other.analysis.mismatch(artifact.analysis) or name not in other.parameters.names:
            continue
        there = other.parameters[name]
        if there.low < here.low if low else there.high > here.high:
            out.append(f"{label} ({name} {there.low:.3g}-{there.high:.3g})")
    return out
