"""Command-line handling shared by the recipes: presets with per-option overrides, and output
folders that belong to one configuration each."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from .command import CommandParser

OVERRIDES = (
    ("nside", int, "HEALPix nside of the backtracked pixels"),
    ("realisations", int, "number of field realisations N_B"),
    ("modes", int, "number of plane-wave modes N"),
    ("dt", float, "Boris step in 1/Ω"),
    ("t-min", float, "first backtracking time ΩT"),
    ("t-max", float, "last backtracking time ΩT"),
    ("n-times", int, "number of log-spaced times"),
)


def parse_preset_args(doc: str, presets: dict, name: str, argv=None, add_arguments=None, prog: str | None = None):
    """Parse ``--preset`` plus overrides; unset options take the preset's values.

    ``add_arguments(parser)`` may add recipe-specific options. ``--out`` defaults to
    ``results/<name>_<preset>``; ``prog`` is the command's name in ``--help``.
    """
    ap = CommandParser(prog=prog, description=doc)
    ap.add_argument("--preset", choices=sorted(presets), default="quick", help="parameter set (default: quick)")
    for opt, typ, help_ in OVERRIDES:
        ap.add_argument(f"--{opt}", type=typ, help=f"{help_} (overrides the preset)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the field realisations")
    ap.add_argument(
        "--out",
        type=Path,
        help=f"output folder (default results/{name}_<preset>, plus the options that differ from the preset)",
    )
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="delete this configuration's checkpoint and results in the folder and run again",
    )
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    if add_arguments is not None:
        add_arguments(ap)
    args = ap.parse_args(argv)
    changed = []
    for key, value in presets[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
        elif getattr(args, key) != value:
            changed.append(f"{key.replace('_', '-')}{getattr(args, key):g}")
    if args.seed != 0:
        changed.append(f"seed{args.seed}")
    args.out = args.out or Path("results") / "_".join([f"{name}_{args.preset}", *changed])
    return args


def claim_output_folder(out: Path, digest: str, params: dict, fresh: bool, outputs=()) -> str:
    """Make ``out`` the folder of the run with configuration ``digest``, before any work.

    A folder that holds another configuration's run (its params.json has another digest) is an
    error (give --out). With ``fresh`` the folder's checkpoints and ``outputs`` are deleted. Then
    params.json is written. Returns what the run will do: "new", "fresh" or "resume".
    """
    params_file = out / "params.json"
    if params_file.exists():
        try:
            owner = json.loads(params_file.read_text()).get("config_digest")
        except (OSError, ValueError):
            owner = None
        if owner != digest:
            raise SystemExit(
                f"error: {out} holds the results of another configuration (digest {owner}, this one {digest}); "
                "give another folder with --out (the default folder is named after the options that differ)"
            )
    state = "new"
    if fresh and out.exists():
        for path in list(out.glob("*.ckpt.npz")) + [out / o for o in outputs]:
            if path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
        state = "fresh"
    elif any(out.glob("*.ckpt.npz")):
        state = "resume"
    out.mkdir(parents=True, exist_ok=True)
    params_file.write_text(json.dumps(dict(params, config_digest=digest), indent=1))
    return state


def add_time_axis_options(ap: argparse.ArgumentParser) -> None:
    """``--energy-tev`` and ``--b0-mug``: for which protons and field a figure gives T in years."""
    ap.add_argument("--energy-tev", type=float, default=10.0, help="proton energy for the time axis in years (TeV)")
    ap.add_argument("--b0-mug", type=float, default=3.0, help="regular field for the time axis in years (μG)")


def time_axis(args) -> tuple[float, str]:
    """(r_L/c in years, a note naming the protons and field) from the options of
    :func:`add_time_axis_options`; an error unless both are positive. Labels only: the physics
    depends on r_L/λ_c alone."""
    from .. import units

    for name in ("energy_tev", "b0_mug"):
        if not getattr(args, name) > 0:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be positive; got {getattr(args, name)}")
    r_l = units.larmor_radius_pc(args.energy_tev, args.b0_mug)
    note = f"T in years for {args.energy_tev:g} TeV protons in B0 = {args.b0_mug:g} μG (r_L = {r_l:.3g} pc)"
    return float(units.time_to_years(1.0, r_l)), note
