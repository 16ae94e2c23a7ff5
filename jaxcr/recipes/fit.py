"""Fit the model's parameters (σ², r_L/λ_c) and the CR gradient to one observed spectrum, on an
emulator artifact.

    jaxcr fit SPECTRUM.csv [SPECTRUM2.csv ...] [--artifact emulator.npz ...] [--gradient-per-pc G | --amplitude A]
        [--b0-mug 3] [--charge 1] [--start sigma2=1 rho=0.1] [--ell-max L] [--form lognormal]
        [--tails gaussian|student-t [--tail-dof NU]] [--out DIR] [--quiet]

SPECTRUM is a spectrum file (format: jaxcr.observations; `jaxcr spectrum-from-maps` makes one
from maps of counts and background); the artifact (`jaxcr campaign artifact`; default: the one
shipped with jaxcr for the spectrum's analysis) must be of the same analysis (band, background
method, estimator, ℓ ≤ L removal). The likelihood is that of one sky (jaxcr.inference.sky_fit):
log-normal by default, i.e. Gaussian in ln(Ĉ_ℓ − N) with the covariance of single skies from the
model's realisations, correlated across ℓ, and its determinant (--form gaussian: the same in
C_ℓ, which also fits multipoles with Ĉ_ℓ ≤ N; --form offset-lognormal: Gaussian in ln Ĉ_ℓ with the
noise inside the model, ln(a·C_ℓ + N_ℓ), which takes every ℓ and becomes the log-normal form
where the signal dominates). --tails student-t --tail-dof NU replaces the Gaussian by a multivariate
Student-t of the same covariance with NU degrees of freedom: heavier tails, so a sky far from the
model gets wider intervals and a typical one narrower ones (mock skies are nearly Gaussian about
the model, docs/fitting.md; the Gaussian stays the default). With --gradient-per-pc (the
CR gradient |∇n/n| in 1/pc, with --b0-mug and the spectrum's energy fixing r_L) or --amplitude
((|∇n/n| r_L)²) the amplitude is known; otherwise it is fitted and reported as the gradient in
1/pc for the given B0. Writes fit.json (parameters, 68/95 % profile intervals, χ², dof, p-value,
flags, best-fit model, settings, artifact provenance, versions) and fit.png (data against model,
profile likelihoods) into --out (default results/fit_<spectrum name>). Takes seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..options import MIN_CALIBRATION_TOYS
from .command import CommandParser

if TYPE_CHECKING:
    from jaxcr.inference.fit import FitOptions


def add_calibrated_intervals_flag(ap: argparse.ArgumentParser) -> None:
    """The ``--calibrated-intervals [TOYS]`` flag, shared by ``jaxcr fit`` and the coverage script."""
    ap.add_argument("--calibrated-intervals", type=int, nargs="?", const=200, metavar="TOYS",
                    help="68/95 %% intervals from critical values calibrated by TOYS toy spectra per value "
                    "(default 200; Feldman-Cousins, right also where the box cuts them; about 0.5-1.5 minutes "
                    "per fit on 2 cores) instead of Δ(−2 ln L) = 1 and 4; on an artifact built with "
                    "--sky-scatter local the toys are drawn with its local covariance of ln C_ℓ")  # fmt: skip


def add_tails_flags(ap: argparse.ArgumentParser) -> None:
    """``--tails gaussian|student-t`` and ``--tail-dof NU``, shared by ``jaxcr fit`` and the coverage scripts."""
    ap.add_argument("--tails", choices=("gaussian", "student-t"), default="gaussian",
                    help="the distribution of one sky's ln C_ℓ about the model: gaussian (default) or student-t "
                    "(heavier tails; needs --tail-dof)")  # fmt: skip
    ap.add_argument("--tail-dof", type=float, metavar="NU", help="ν > 2 of --tails student-t")


def check_tails(ap: argparse.ArgumentParser, tails: str, tail_dof: float | None) -> None:
    """--tails student-t takes a finite --tail-dof > 2, and --tail-dof only goes with it."""
    if (tails == "student-t") != (tail_dof is not None) or (tail_dof is not None and not 2 < tail_dof < float("inf")):
        ap.error(f"--tails student-t takes --tail-dof NU, a finite ν > 2; got --tails {tails} --tail-dof {tail_dof}")


def check_calibrated_intervals(ap: argparse.ArgumentParser, toys: int | None) -> None:
    """Refuse fewer than :data:`jaxcr.options.MIN_CALIBRATION_TOYS` toys before any work (no JAX imported)."""
    if toys is not None and toys < MIN_CALIBRATION_TOYS:
        ap.error(f"--calibrated-intervals takes at least {MIN_CALIBRATION_TOYS} toys; got {toys}")


def fit_options(toys: int | None, *, seed: int) -> FitOptions:
    """The :class:`jaxcr.inference.fit.FitOptions` of ``--calibrated-intervals TOYS`` (None: profile
    intervals) with the toys drawn from ``seed``."""
    from jaxcr.inference.fit import FitOptions
    from jaxcr.inference.neyman import NeymanCalibration

    return FitOptions(calibration=None if toys is None else NeymanCalibration(toys=toys, seed=seed))


def _parser(prog: str) -> argparse.ArgumentParser:
    ap = CommandParser(prog=prog, description=__doc__)
    ap.add_argument("spectrum", type=Path, nargs="+",
                    help="the observed spectrum file (.csv, format: jaxcr.observations); several: one joint fit of "
                    "σ² and λ_c shared by them, each with its own r_L(E) and amplitude")  # fmt: skip
    ap.add_argument("--artifact", type=Path, action="append",
                    help="emulator artifact of the spectrum's analysis (.npz, or a shipped one's name, e.g. "
                    "icecube or icecube-wide; one per spectrum, in order; default: the one shipped with jaxcr for each "
                    "spectrum's analysis, if any)")  # fmt: skip
    known = ap.add_mutually_exclusive_group()
    known.add_argument("--gradient-per-pc", type=float, help="the CR gradient |∇n/n| in 1/pc, if known")
    known.add_argument("--amplitude", type=float, help="or the amplitude a = (|∇n/n| r_L)², if known")
    ap.add_argument("--b0-mug", type=float, default=3.0, help="regular field B0 in μG, for r_L (default 3)")
    ap.add_argument("--charge", type=float, default=1.0, help="charge number Z of the CRs (default 1)")
    ap.add_argument("--start", nargs="+", metavar="NAME=VALUE",
                    help="start of the fit, every parameter of the artifact named, e.g. sigma2=1 rho=0.1 "
                    "(default: the best point of a grid over the artifact's box)")  # fmt: skip
    ap.add_argument("--form", choices=("lognormal", "offset-lognormal", "gaussian"), default="lognormal",
                    help="the one-sky likelihood: lognormal (default; needs Ĉ_ℓ above the noise level), offset-lognormal "
                    "(every ℓ, noise-dominated ones included) or gaussian")  # fmt: skip
    add_tails_flags(ap)
    ap.add_argument("--ell-max", type=int, help="fit only ℓ ≤ L (an explicit cut, recorded in fit.json)")
    add_calibrated_intervals_flag(ap)
    ap.add_argument("--region-thresholds", type=Path, metavar="FILE",
                    help="critical values of the joint (σ², ρ) region from a campaign's realisations "
                    "(jaxcr campaign thresholds; default χ²₂'s 2.30 and 6.18)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="seed of the toys of --calibrated-intervals (default 0)")
    ap.add_argument("--out", type=Path, help="output folder (default results/fit_<spectrum file name>)")
    ap.add_argument("--overwrite", action="store_true", help="replace the fit.json and fit.png already in --out")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def _named_values(items) -> dict:
    """{name: value} of NAME=VALUE strings (a ValueError names the flag and the bad item)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ValueError(f"--start takes NAME=VALUE pairs such as sigma2=1 rho=0.1; got {item!r}")
    return out


def main(argv=None, prog: str = "jaxcr fit") -> int:
    ap = _parser(prog)
    args = ap.parse_args(argv)
    if args.ell_max is not None and args.ell_max < 1:
        ap.error(f"--ell-max must be >= 1; got {args.ell_max}")
    for name in ("b0_mug", "charge", "gradient_per_pc", "amplitude"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            ap.error(f"--{name.replace('_', '-')} must be > 0; got {value}")
    check_calibrated_intervals(ap, args.calibrated_intervals)
    check_tails(ap, args.tails, args.tail_dof)
    if args.seed < 0:
        ap.error(f"--seed must be >= 0; got {args.seed}")
    start = None if args.start is None else _named_values(args.start)  # checked before any work
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxcr import io

    if args.artifact and len(args.artifact) != len(args.spectrum):
        ap.error(f"give one --artifact per spectrum ({len(args.spectrum)}), or none; got {len(args.artifact)}")
    if len(args.spectrum) > 1 and (args.amplitude is not None or args.start or args.ell_max or args.region_thresholds):
        ap.error(
            "--amplitude, --start, --ell-max and --region-thresholds are for one spectrum; a joint fit takes "
            "--gradient-per-pc"
        )
    out = args.out or Path("results") / ("fit_" + "_".join(p.stem for p in args.spectrum))
    if (out / "fit.json").exists() and not args.overwrite:
        ap.error(f"{out / 'fit.json'} exists (an earlier fit): give another --out, or --overwrite to replace it")
    created = not out.exists()
    io.check_writable("--out", out / "fit.json")
    try:
        return _fit(args, out, start)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a failed fit leaves no empty folder behind
        raise


def _fit(args, out: Path, start: dict | None) -> int:
    from jaxcr.inference.artifact import EmulatorArtifact
    from jaxcr.inference.joint_fit import fit_skies
    from jaxcr.inference.joint_region import RegionThresholds
    from jaxcr.inference.shipped import check_artifact_path, shipped_artifact_for
    from jaxcr.inference.sky_fit import fit_sky
    from jaxcr.observations import load_spectrum

    spectra = [load_spectrum(p) for p in args.spectrum]
    if args.artifact:
        artifacts = [EmulatorArtifact.load(check_artifact_path(p)) for p in args.artifact]
    else:
        artifacts = [shipped_artifact_for(s.analysis) for s in spectra]
    options = fit_options(args.calibrated_intervals, seed=args.seed)
    thresholds = None if args.region_thresholds is None else RegionThresholds.load(args.region_thresholds)
    common = dict(
        b0_microgauss=args.b0_mug,
        charge=args.charge,
        form=args.form,
        tails=args.tails,
        tail_dof=args.tail_dof,
        options=options,
        progress=not args.quiet,
    )
    if len(spectra) > 1:
        result = fit_skies(spectra, artifacts, gradient_per_pc=args.gradient_per_pc, **common)
    else:
        result = fit_sky(
            spectra[0],
            artifacts[0],
            gradient_per_pc=args.gradient_per_pc,
            amplitude=args.amplitude,
            start=start,
            ell_max=args.ell_max,
            **common,
            region_thresholds=thresholds,
        )
    result.save(out)
    for artifact in {a.version: a for a in artifacts}.values():
        print(artifact.summary())
    print(result.summary())
    print(f"wrote {out / 'fit.json'} and {out / 'fit.png'}")
    return 0
