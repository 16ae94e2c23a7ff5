"""Command-line handling shared by the experiment scripts: presets with per-option overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

OVERRIDES = (
    ("nside", int, "HEALPix nside of the backtracked pixels"),
    ("realisations", int, "number of field realisations N_B"),
    ("modes", int, "number of plane-wave modes N"),
    ("dt", float, "Boris step in 1/Ω"),
    ("t-min", float, "first backtracking time ΩT"),
    ("t-max", float, "last backtracking time ΩT"),
    ("n-times", int, "number of log-spaced times"),
)


def parse_preset_args(doc: str, presets: dict, name: str, argv=None, add_arguments=None):
    """Parse ``--preset`` plus overrides; unset options take the preset's values.

    ``add_arguments(parser)`` may add script-specific options. ``--out`` defaults to
    ``results/<name>_<preset>``.
    """
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(presets), default="quick", help="parameter set (default: quick)")
    for opt, typ, help_ in OVERRIDES:
        ap.add_argument(f"--{opt}", type=typ, help=f"{help_} (overrides the preset)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the field realisations")
    ap.add_argument("--out", type=Path, help=f"output folder (default results/{name}_<preset>)")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    if add_arguments is not None:
        add_arguments(ap)
    args = ap.parse_args(argv)
    for key, value in presets[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.out = args.out or Path("results") / f"{name}_{args.preset}"
    return args
