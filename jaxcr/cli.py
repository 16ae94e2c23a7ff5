"""The ``jaxcr`` command.

    jaxcr spectrum-from-maps COUNTS.fits [--background BACKGROUND.fits] --band DEC_MIN DEC_MAX \\
        [--estimator pseudo|fsky|k-corrected] [--background-method time-scrambling|known] \\
        [--remove-ell-max L] [--lmax L] [--resamples N] --out spectrum.csv
    jaxcr native [--rebuild]      # the native CPU kernel: where it is, which CPU variant, (re)build
    jaxcr fig2 [--preset quick|paper] [options]      # the paper's Fig. 2 (jaxcr.recipes.fig2)
    jaxcr gedanken [--preset quick|paper] [options]  # the Liouville gedankenexperiment
    jaxcr sky-maps [--preset quick|paper] [options]  # Mollweide sky maps of δI
    jaxcr campaign create|run|status|extend|task|slurm|dask|artifact ...  # model spectra for fits
    jaxcr fit SPECTRUM.csv --artifact emulator.npz [options]          # one-sky fit in seconds
    jaxcr benchmark [options]     # speed on this machine: field, backtracking, a campaign point

Each recipe has --help for its options; it writes into its own folder (results/<recipe>_<preset>,
or --out), resumes an interrupted run, and starts again with --fresh.

spectrum-from-maps: maps are HEALPix FITS files as healpy writes them, in equatorial coordinates: counts and
background as two columns of one file (``--counts-field``, ``--background-field``, default 0
and 1) or one column each of two files. The spectrum file it writes (format:
:mod:`jaxcr.observations`) states its estimator, background method, noise level, errors and the
band of isotropic skies, and is what ``jaxcr fit`` (:func:`jaxcr.inference.fit_sky`) reads.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .conventions import BackgroundMethod, Estimator
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
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jaxcr")
    except PackageNotFoundError:
        return "0+unknown"


def _spectrum_from_maps(args) -> int:
    from . import io
    from .analysis import Analysis
    from .observations import save_spectrum
    from .observatory import read_healpix_maps, spectrum_from_maps

    io.check_writable("--out", args.out)
    if args.background is None:
        counts, background = read_healpix_maps(args.counts, (args.counts_field, args.background_field))
    else:
        (counts,) = read_healpix_maps(args.counts, (args.counts_field,))
        (background,) = read_healpix_maps(args.background, (args.background_field,))
    analysis = Analysis(
        "observed",
        dec_min_deg=args.band[0],
        dec_max_deg=args.band[1],
        background=args.background_method,
        remove_ell_max=args.remove_ell_max,
        estimator=args.estimator,
    )
    spec = spectrum_from_maps(
        counts,
        background,
        analysis,
        lmax=args.lmax,
        ell_min=args.ell_min,
        n_resamples=args.resamples,
        seed=args.seed,
        observatory=args.observatory,
        energy_tev=args.energy_tev,
        source=f"jaxcr spectrum-from-maps {args.counts}" + (f" {args.background}" if args.background else ""),
    )
    save_spectrum(spec, args.out)
    print(
        f"wrote {args.out}: ℓ = {spec.ell[0]}..{spec.ell[-1]}, estimator {spec.analysis.estimator.value}, "
        f"noise level {spec.noise_level:.4g}, {int(counts.sum())} events\n"
        f"next: jaxcr fit {args.out} [--artifact emulator.npz]   (the shipped artifact of its analysis, if any)"
    )
    return 0


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
        "spectrum-from-maps",
        help="a spectrum file from HEALPix maps of counts and background",
        description="Relative intensity, optional ℓ ≤ L removal, the estimator's spectrum, its shot-noise "
        "level, Poisson errors and the isotropic band, from maps of counts and background.",
    )
    s.add_argument("counts", type=Path, help="FITS file with the counts map (and the background as a second column)")
    s.add_argument("--background", type=Path, help="FITS file with the background map (default: a column of COUNTS)")
    s.add_argument("--counts-field", type=int, default=0, help="column of the counts map (default 0)")
    s.add_argument(
        "--background-field",
        type=int,
        default=None,
        help="column of the background map (default 1 in the counts file, 0 in its own file)",
    )
    s.add_argument(
        "--band",
        type=float,
        nargs=2,
        default=(-90.0, 90.0),
        metavar=("DEC_MIN", "DEC_MAX"),
        help="declination band of the field of view in degrees (default the full sky)",
    )
    s.add_argument(
        "--estimator",
        choices=[e.value for e in Estimator],
        default=Estimator.PSEUDO.value,
        help="pseudo: anafast of the masked map (default); fsky: divided by f_sky; k-corrected: by the band's K",
    )
    s.add_argument(
        "--background-method",
        choices=[b.value for b in BackgroundMethod],
        default=BackgroundMethod.TIME_SCRAMBLING.value,
        help="how the background map was estimated (default time-scrambling: the m = 0 modes are lost)",
    )
    s.add_argument(
        "--remove-ell-max", type=int, help="fit and subtract the multipoles ℓ ≤ L on the observed pixels first"
    )
    s.add_argument("--lmax", type=int, help="largest multipole (default 2·nside − 1)")
    s.add_argument("--ell-min", type=int, default=1, help="smallest multipole written (default 1)")
    s.add_argument("--resamples", type=int, default=32, help="Poisson resamplings for the errors and isotropic band")
    s.add_argument("--seed", type=int, default=0, help="seed of the resamplings")
    s.add_argument("--observatory", default="observed", help="name written into the spectrum file")
    s.add_argument("--energy-tev", type=float, default=1.0, help="median energy in TeV written into the file")
    s.add_argument("--out", type=Path, required=True, help="the spectrum file to write (.csv)")
    s.set_defaults(run=_spectrum_from_maps)
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
        return run_command(f"jaxcr {argv[0]}", lambda: recipe.main(argv[1:], prog=f"jaxcr {argv[0]}"))
    return run_command("jaxcr", lambda: _run(argv))


def _run(argv) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "background_field", 0) is None:
        args.background_field = 1 if args.background is None else 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
