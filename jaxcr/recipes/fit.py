"""Fit σ², r_L/λ_c (and the CR gradient) to one observed spectrum, on an emulator artifact.

    jaxcr fit SPECTRUM.csv --artifact emulator.npz [--gradient-per-pc G | --amplitude A]
        [--b0-mug 3] [--charge 1] [--start SIGMA2 RHO] [--ell-max L] [--out DIR] [--quiet]

SPECTRUM is a spectrum file (format: jaxcr.observations; `jaxcr spectrum-from-maps` makes one
from maps of counts and background); the artifact (`jaxcr campaign artifact`) must be of the same
analysis (band, background method, estimator, ℓ ≤ L removal). The likelihood is that of one sky:
Gaussian in C_ℓ with the cosmic variance of single skies from the model's realisations,
correlated across ℓ, and its determinant (jaxcr.inference.sky_fit). With --gradient-per-pc (the
CR gradient |∇n/n| in 1/pc, with --b0-mug and the spectrum's energy fixing r_L) or --amplitude
((|∇n/n| r_L)²) the amplitude is known; otherwise it is fitted and reported as the gradient in
1/pc for the given B0. Writes fit.json (parameters, 68/95 % profile intervals, χ², dof, p-value,
flags, best-fit model, settings, artifact provenance, versions) and fit.png (data against model,
profile likelihoods) into --out (default results/fit_<spectrum name>). Takes seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser(prog: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spectrum", type=Path, help="the observed spectrum file (.csv, format: jaxcr.observations)")
    ap.add_argument("--artifact", type=Path, required=True, help="emulator artifact of the spectrum's analysis (.npz)")
    known = ap.add_mutually_exclusive_group()
    known.add_argument("--gradient-per-pc", type=float, help="the CR gradient |∇n/n| in 1/pc, if known")
    known.add_argument("--amplitude", type=float, help="or the amplitude a = (|∇n/n| r_L)², if known")
    ap.add_argument("--b0-mug", type=float, default=3.0, help="regular field B0 in μG, for r_L (default 3)")
    ap.add_argument("--charge", type=float, default=1.0, help="charge number Z of the CRs (default 1)")
    ap.add_argument("--start", type=float, nargs=2, metavar=("SIGMA2", "RHO"),
                    help="start of the fit (default: the best point of a 9×9 grid over the artifact's box)")  # fmt: skip
    ap.add_argument("--ell-max", type=int, help="fit only ℓ ≤ L (an explicit cut, recorded in fit.json)")
    ap.add_argument("--out", type=Path, help="output folder (default results/fit_<spectrum file name>)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def main(argv=None, prog: str = "jaxcr fit") -> int:
    args = _parser(prog).parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxcr import io
    from jaxcr.inference.artifact import EmulatorArtifact, check_artifact_path
    from jaxcr.inference.sky_fit import fit_sky
    from jaxcr.observations import load_spectrum

    out = args.out or Path("results") / f"fit_{args.spectrum.stem}"
    try:
        io.check_writable("--out", out / "fit.json")
        spectrum = load_spectrum(args.spectrum)
        artifact = EmulatorArtifact.load(check_artifact_path(args.artifact))
        result = fit_sky(
            spectrum,
            artifact,
            gradient_per_pc=args.gradient_per_pc,
            amplitude=args.amplitude,
            b0_microgauss=args.b0_mug,
            charge=args.charge,
            start=None if args.start is None else dict(sigma2=args.start[0], rho=args.start[1]),
            ell_max=args.ell_max,
            progress=not args.quiet,
        )
    except (ValueError, TypeError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    result.save(out)
    print(artifact.summary())
    print(result.summary())
    print(f"wrote {out / 'fit.json'} and {out / 'fit.png'}")
    return 0
