"""The ``jaxcr`` command.

    jaxcr spectrum-from-maps COUNTS.fits [...] --energy-tev E --out spectrum.csv   # a spectrum file from maps
    jaxcr mock-sky [--observatory icecube] [options]  # mock counts and background maps of a model sky
    jaxcr native [--rebuild]      # the native CPU kernel: where it is, which CPU variant, (re)build
    jaxcr fig2 [--preset quick|paper] [options]      # the paper's Fig. 2 (jaxcr.recipes.fig2)
    jaxcr gedanken [--preset quick|paper] [options]  # the Liouville gedankenexperiment
    jaxcr sky-maps [--preset quick|paper] [options]  # Mollweide sky maps of δI
    jaxcr campaign create|run|status|extend|task|slurm|dask|artifact|thresholds ...  # model spectra for fits
    jaxcr fit SPECTRUM.csv --artifact emulator.npz [options]          # one-sky fit in seconds
    jaxcr benchmark [options]     # speed on this machine: field, backtracking, a campaign point

Each recipe has --help for its options; it writes into its own folder (results/<recipe>_<preset>,
or --out), resumes an interrupted run, and starts again with --fresh.

"""

from __future__ import annotations

import argparse
import importlib
import sys

from .recipes.command import CommandParser, run_command

__all__ = ["main"]

#: command → (module in jaxcr.recipes, one-line help)
RECIPES = {
    "fig2": ("fig2", "reproduce the paper's Fig. 2: <C_l>(T) for gradients parallel and perpendicular to B0"),
    "gedanken": ("gedanken", "the Liouville gedankenexperiment (Sec. 2): conserved sum and the ratios of Eq. 4"),
    "sky-maps": ("sky_maps", "Mollweide sky maps of the relative intensity at chosen backtracking times"),
    "campaign": ("campaign", "model spectra on a design of named-parameter points, and emulator artifacts for fits"),
    "fit": ("fit", "fit the model's parameters and the CR gradient to one observed spectrum on an emulator artifact"),
    "benchmark": ("benchmark", "field, backtracking and campaign-point speed on this machine, side by side"),
    "spectrum-from-maps": ("spectrum_from_maps", "a spectrum file from HEALPix maps of counts and background"),
    "mock-sky": ("mock_sky", "a mock observation of one model sky: counts and background FITS maps and its spectrum"),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jaxcr")
    except PackageNotFoundError:
        return "0+unknown"


def _native(args) -> int:
    from .native import build

    if args.rebuild:
        path = build.library_path()
        if path.exists():
            path.unlink()
    from . import native

    if not native.available():
        print(f"jaxcr native: unavailable: {native.unavailable_reason()}", file=sys.stderr)
        return 1
    print(f"native CPU kernel: {build.library_path()}\ninstruction set in use: {native.instruction_set()}")
    return 0


def _parser() -> argparse.ArgumentParser:
    ap = CommandParser(prog="jaxcr", description=__doc__)
    ap.add_argument("--version", action="version", version=f"jaxcr {_version()}", help="print the version and exit")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, (_, help_) in RECIPES.items():  # listed here; main() hands their options to the recipe
        sub.add_parser(name, help=help_, add_help=False)
    s = sub.add_parser(
        "native",
        help="the native CPU mode-sum kernel: build it, say where it is and which CPU variant runs",
        description="Builds the kernel if needed (C++ compiler and the installed jaxlib's headers), then prints "
        "the cached library and the instruction-set variant in use (JAXCR_NATIVE_VARIANT forces one).",
    )
    s.add_argument("--rebuild", action="store_true", help="delete the cached library first and build it again")
    s.set_defaults(run=_native)
    return ap


def main(argv=None) -> int:
    """Entry point of the ``jaxcr`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in RECIPES:
        recipe = importlib.import_module(f"jaxcr.recipes.{RECIPES[argv[0]][0]}")
        prog = f"jaxcr {argv[0]}"
        return run_command(prog, lambda: recipe.main(argv[1:], prog=prog), getattr(recipe, "FLAGS", None))
    return run_command("jaxcr", lambda: _run(argv))


def _run(argv) -> int:
    args = _parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
