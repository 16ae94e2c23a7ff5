"""``jaxcr campaign thresholds``: critical values of the joint (σ², ρ) region from a campaign's realisations.

    jaxcr campaign thresholds FOLDER [FOLDER …] --artifact A.npz --out thresholds.json
        [--amplitude-free] [--form lognormal|offset-lognormal|gaussian] [--quiet]

Each design point's realisations (those of several campaigns at the same point pooled) are fitted one by one as skies with the likelihood a fit on
--artifact uses (:mod:`jaxcr.inference.region_calibration`); the 68.27 % and 95.45 % quantiles of
λ at the point replace χ²₂'s 2.30 and 6.18 in `jaxcr fit --region-thresholds thresholds.json`.
Take a campaign of another seed than the artifact's (the same model, box points anywhere in it):
the artifact's own realisations are in sample. Fits must use the same artifact, form and
multipoles, and the same amplitude mode: --amplitude-free for fits without --gradient-per-pc or
--amplitude. The realisations' measurement errors are the campaign's pixel noise: for data with
larger errors (IceCube-like mock skies) these values made the region too small away from the
low-ρ corner, where χ²₂'s (the fit's default) covered better (docs/fitting.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    """The subcommand's arguments, on the ``jaxcr campaign`` subparsers ``sub``."""
    s = sub.add_parser(
        "thresholds",
        help="critical values of the joint (σ², ρ) region from the campaign's realisations fitted as skies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("folder", type=Path, nargs="+",
                   help="finished campaigns of the artifact's model (best of other seeds than its own)")  # fmt: skip
    s.add_argument("--artifact", type=Path, required=True, help="the artifact the fits use (a file or a shipped name)")
    s.add_argument("--out", type=Path, required=True, help="the thresholds file to write (.json)")
    s.add_argument("--amplitude-free", action="store_true",
                   help="for fits that fit the amplitude (no --gradient-per-pc or --amplitude)")  # fmt: skip
    s.add_argument("--form", choices=("lognormal", "offset-lognormal", "gaussian"), default="lognormal",
                   help="the fits' likelihood form (default lognormal)")  # fmt: skip
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(run=_thresholds)


def _thresholds(args) -> int:
    from jaxcr import io
    from jaxcr.inference.artifact import EmulatorArtifact
    from jaxcr.inference.campaign import Campaign
    from jaxcr.inference.region_calibration import region_thresholds
    from jaxcr.inference.shipped import check_artifact_path

    io.check_writable("--out", args.out)
    artifact = EmulatorArtifact.load(check_artifact_path(args.artifact))
    campaigns = [Campaign.open(f) for f in args.folder]
    thresholds = region_thresholds(
        campaigns, artifact, amplitude_free=args.amplitude_free, form=args.form, progress=not args.quiet
    )
    thresholds.save(args.out)
    folders = ", ".join(str(f) for f in args.folder)
    print(f"region thresholds at {len(thresholds.points)} design points of {folders} for artifact {artifact.version}:")
    for k, point in enumerate(thresholds.points):
        values = artifact.parameters.values(point)
        c68, c95 = (float(c[k]) for c in thresholds.critical.values())
        named = ", ".join(f"{n} = {float(v):.4g}" for n, v in values.items())
        print(f"  {named}: c_68 = {c68:.2f}, c_95 = {c95:.2f} (χ²₂: 2.30, 6.18) from {thresholds.skies[k]} skies "
              f"({thresholds.refused[k]} refused)")  # fmt: skip
    print(f"wrote {args.out}")
    return 0
