"""Campaigns of model spectra for the fits, and the emulator artifacts made from them.

    jaxcr campaign create FOLDER [--sigma2 0.3 3] [--rho 0.05 0.2] [--points 5] [--nside 32]
        [--realisations 32] [--modes 32] [--separation-times 0.5 1 2 4 | --times T …]
        [--observatory icecube hawc]
        [--b0-ra-dec 229.2 11.4] [--gradient-ra-dec RA DEC] [--seed 2026] [--field-precision float64]
    jaxcr campaign run FOLDER [--workers 1] [--quiet]       # runs what is missing; resumes after a kill
    jaxcr campaign status FOLDER
    jaxcr campaign extend FOLDER --sigma2 LO HI --rho LO HI --points N
    jaxcr campaign lengthen FOLDER --points K [K …] [--factor 2]   # follow points still changing longer
    jaxcr campaign more-realisations FOLDER --points K [K …] --realisations N   # N_B = N there; keeps the ones done
    jaxcr campaign task FOLDER INDEX                          # one design point (what a SLURM array task runs)
    jaxcr campaign slurm FOLDER [--time 01:00:00] [--cpus 4] [--mem 8G] [--partition P]  # writes FOLDER/submit.sh
    jaxcr campaign dask FOLDER --scheduler tcp://HOST:8786   # tasks on a Dask cluster (pip install 'jaxcr[cluster]')
    jaxcr campaign artifact FOLDER --analysis icecube [--ell-max 20] [--time T] [--degree 2] --out emulator.npz
        [--pair-model [LAW.json] [--fit-sigma2 LO HI] [--fit-rho LO HI]]   # θ-dependence by jaxcr.pair_model
        [--pixel-noise-scatter kept]   # keep the campaign's pixel-noise fluctuations in ln C_ℓ (0.3 artifacts)
        [--sky-scatter local]          # also each point's scatter, for calibrated intervals (docs/fitting.md)
    jaxcr campaign thresholds FOLDER --artifact A.npz --out thresholds.json   # joint-region critical values

A campaign backtracks N_B realisations at every design point of (σ², r_L/λ_c) (log-spaced grid over
the box) from every pixel of --nside to each of its times (multiples of its separation time
t_sep(σ², ρ), or the same --times ΩT everywhere), and stores the spectra each observatory analysis
would publish (its band, background method, estimator) with the pixel-noise level of the map; one
file per point under FOLDER/points. `create` prints the work and its time on 2 CPU cores and on a
GPU (at the defaults: 1.8×10¹¹ particle-steps, about 1.5 hours on 2 cores); cost ∝ nside² · N_B ·
max(times) / dt. The artifact is the emulator of one analysis at the time the convergence
diagnostic picks, with its provenance; fits on it (`jaxcr fit`) take seconds. With --pair-model
the artifact's dependence on (σ², ρ) is the semi-analytic pair model's (the shipped law, or LAW.json
written by experiments/pair_model.py), the campaign fixes only the analysis' transfer (a degree-1
polynomial by default), and fits may reach beyond the simulated box to --fit-sigma2/--fit-rho,
flagged as extrapolations.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..options import PixelNoiseScatter, SkyScatter
from . import campaign_thresholds
from .campaign_cost import DEFAULT_SEPARATION_TIMES, cost_line, resonance_warning, work_line
from .command import CommandParser

OBSERVATORY_CHOICES = ("icecube", "hawc", "hawc+icecube")


def _parameters(args):
    from jaxcr.parametrisation import plane_wave_parametrisation

    for flag, (low, _) in (("--sigma2", args.sigma2), ("--rho", args.rho)):
        if not low > 0:  # a design point at 0 has no field (σ² = 0) or no gyration (ρ = 0)
            raise ValueError(
                f"{flag} must be > 0 at its lower end (a campaign simulates every design point); got {low:g}"
            )
    return plane_wave_parametrisation(tuple(args.sigma2), tuple(args.rho))


def _create(args) -> int:
    from jaxcr.inference.campaign import Campaign, CampaignSpec
    from jaxcr.observations import OBSERVATORIES
    from jaxcr.sky import equatorial_direction
    from jaxcr.spectrum_model import SpectrumModel
    from jaxcr.turbulence_model import DEFAULT_LAMBDA_MIN_OVER_LC, PlaneWaveGJ99, default_modes, resonant_lambda_min

    b0 = tuple(float(x) for x in equatorial_direction(*args.b0_ra_dec))
    grad = b0 if args.gradient_ra_dec is None else tuple(float(x) for x in equatorial_direction(*args.gradient_ra_dec))
    parameters = _parameters(args)  # checks --sigma2 and --rho before λ_min is taken from --rho
    lambda_min = resonant_lambda_min(min(args.rho)) if args.lambda_min_over_lc is None else args.lambda_min_over_lc
    n_modes = default_modes(lambda_min, args.lambda_max_over_lc) if args.modes is None else args.modes
    if args.lambda_min_over_lc is None and lambda_min < DEFAULT_LAMBDA_MIN_OVER_LC:
        print(f"modes: {n_modes} over {lambda_min:g}-{args.lambda_max_over_lc:g} λ_c, down to below the gyro-resonant "
              f"wavelength 2π r_L at r_L/λ_c = {min(args.rho):g} (without a resonant mode ⟨C_ℓ⟩ came out 110-180 "
              "times too large at 0.01; --lambda-min-over-lc and --modes override)")  # fmt: skip
    model = SpectrumModel(
        nside=args.nside,
        n_realisations=args.realisations,
        turbulence=PlaneWaveGJ99(
            n_modes=n_modes,
            lambda_min_over_lc=lambda_min,
            lambda_max_over_lc=args.lambda_max_over_lc,
        ),
        b0_direction=b0,
        gradient_direction=grad,
        seed=args.seed,
        dt=args.dt,
        field_precision=args.field_precision,
    )
    analyses = tuple(OBSERVATORIES[name].analysis for name in dict.fromkeys(args.observatory))
    points = tuple(args.points) if len(args.points) == 2 else args.points[0]
    spec = CampaignSpec(
        model=model,
        times=tuple(args.times or args.separation_times or DEFAULT_SEPARATION_TIMES),
        analyses=analyses,
        parameters=parameters,
        design=parameters.grid(points),
        step_per_point=args.dt is None,
        separation_times=not args.times,
    )
    campaign = Campaign.create(args.folder, spec)
    if spec.separation_times:
        from jaxcr.inference.convergence import SEPARATION_LAW as law

        shortest, longest = spec.time_range()
        print(f"times: {spec.times_text()} (t_sep ≈ {law['A']:g}·(σ²)^{law['b']:.2f}·ρ^{law['c']:.2f} /Ω, the measured "
              "scale of convergence): "
              f"ΩT = {shortest:.3g}-{longest:.4g} over the box; --times stores one ΩT list for every point")  # fmt: skip
    print(campaign.status())
    warning = resonance_warning(spec)
    if warning:
        print(warning)
    print(cost_line(spec))
    print(f"next: jaxcr campaign run {args.folder}   (or: jaxcr campaign slurm {args.folder})")
    return 0


def _run(args) -> int:
    from jaxcr.inference.campaign import Campaign
    from jaxcr.inference.scheduling import run_campaign

    campaign = Campaign.open(args.folder)
    run_campaign(campaign, workers=args.workers, progress=not args.quiet)
    print(campaign.status())
    names = " | ".join(a.name for a in campaign.spec.analyses)
    print(f"next: jaxcr campaign artifact {args.folder} --analysis {names} --out emulator.npz")
    return 0


def _status(args) -> int:
    from jaxcr.inference.campaign import Campaign

    return print(Campaign.open(args.folder).status()) or 0


def _extend(args) -> int:
    from jaxcr.inference.campaign import Campaign

    campaign = Campaign.open(args.folder)
    points = tuple(args.points) if len(args.points) == 2 else args.points[0]
    added = campaign.extend(_parameters(args).grid(points))
    print(f"added {len(added)} design points; {campaign.status()}")
    return 0


def _lengthen(args) -> int:
    from jaxcr.inference.campaign import Campaign

    campaign = Campaign.open(args.folder)
    before = campaign.spec.point_particle_steps()
    chosen = campaign.lengthen(args.points, args.factor)
    after = campaign.spec.point_particle_steps()
    for k in chosen:
        times = ", ".join(f"{t:.4g}" for t in campaign.spec.point_times(k))
        print(f"design point {campaign.spec.points_text([k])}: ΩT = {times}")
    print(work_line(campaign.spec, sum(after[k] for k in chosen), f"the {len(chosen)} lengthened point(s), from the start; "
                    f"{sum(before[k] for k in chosen):.3g} before"))  # fmt: skip
    print(f"{campaign.status()}\nnext: jaxcr campaign run {args.folder}")
    return 0


def _more_realisations(args) -> int:
    from jaxcr.inference.campaign import Campaign

    campaign = Campaign.open(args.folder)
    chosen = campaign.add_realisations(args.points, args.realisations)
    print(f"design points {campaign.spec.points_text(chosen)}: {args.realisations} realisations each")
    print(work_line(campaign.spec, sum(campaign.work_left()[k] for k in chosen), f"the realisations added at "
                    f"{len(chosen)} point(s); those done are kept"))  # fmt: skip
    print(f"{campaign.status()}\nnext: jaxcr campaign run {args.folder}, then build the artifact again")
    return 0


def _task(args) -> int:
    from jaxcr.inference.campaign import Campaign

    return print(f"design point {args.index}: {Campaign.open(args.folder).run_task(args.index)}") or 0


def _slurm(args) -> int:
    from jaxcr import io
    from jaxcr.inference.campaign import Campaign
    from jaxcr.inference.scheduling import slurm_script

    campaign = Campaign.open(args.folder)
    text = slurm_script(
        campaign, time_limit=args.time, cpus_per_task=args.cpus, memory=args.mem, partition=args.partition,
        max_parallel=args.max_parallel,
    )  # fmt: skip
    path = io.atomic_write(Path(args.folder) / "submit.sh", lambda tmp: Path(tmp).write_text(text))
    print(f"wrote {path} ({len(campaign.pending())} array tasks); submit with: sbatch {path}")
    return 0


def _dask(args) -> int:
    from jaxcr.inference.campaign import Campaign
    from jaxcr.inference.scheduling import run_campaign_dask

    try:
        from distributed import Client
    except ImportError:
        raise ValueError("the Dask runner needs dask.distributed: pip install 'jaxcr[cluster]'") from None
    campaign = Campaign.open(args.folder)
    with Client(args.scheduler) as client:
        done = run_campaign_dask(campaign, client)
    print(f"{len(done)} design points computed on {args.scheduler}; {campaign.status()}")
    return 0


def _artifact(args) -> int:
    from jaxcr import io
    from jaxcr.inference.artifact_build import build_artifact
    from jaxcr.inference.campaign import Campaign
    from jaxcr.inference.convergence import points_holding_back
    from jaxcr.spectra import max_lmax

    io.check_writable("--out", args.out)
    campaign = Campaign.open(args.folder)
    analysis = next((a for a in campaign.spec.analyses if a.name == args.analysis), None)
    ells = None
    if args.ell_max is not None:
        lmax = max_lmax(campaign.spec.model.nside)
        if not 2 <= args.ell_max <= lmax:
            raise ValueError(f"--ell-max must be in [2, {lmax}] (2·nside − 1 of the campaign); got {args.ell_max}")
        first = 1 if analysis is None or analysis.remove_ell_max is None else analysis.remove_ell_max + 1
        ells = np.arange(first, args.ell_max + 1)
    law, box = None, None
    if args.pair_model is not None:
        from jaxcr.pair_model import PairModelLaw

        law = PairModelLaw.load(None if args.pair_model == "shipped" else args.pair_model)
        box = {k: v for k, v in (("sigma2", args.fit_sigma2), ("rho", args.fit_rho)) if v is not None}
    elif args.fit_sigma2 is not None or args.fit_rho is not None:
        raise ValueError("--fit-sigma2 and --fit-rho need --pair-model: the polynomial emulator does not extrapolate")
    artifact = build_artifact(
        campaign, args.analysis, ells=ells, time=args.time, degree=args.degree, pair_model=law, box=box or None,
        pixel_noise_scatter=args.pixel_noise_scatter, sky_scatter=args.sky_scatter,
    )  # fmt: skip
    artifact.save(args.out)
    print(artifact.summary())
    unit = " t_sep" if campaign.spec.separation_times else ""
    rows = artifact.provenance["convergence"]["table"]
    for row in rows:
        changing = row.get("points_changing", [])
        print(
            f"  ΩT = {row['time']:6g}{unit}: q = {row['q']:.2f} ± {row['q_se']:.2f}, mean shift to the last time "
            f"{100 * row['relative_shift']:+.0f} %"
            + (f", still changing at {campaign.spec.points_text(changing)}" if changing else "")
            + (
                "  (the last stored time: the reference)"
                if row is rows[-1]
                else "  converged"
                if row["converged"]
                else ""
            )
        )
    print(
        f"wrote {args.out}\nnext: jaxcr fit SPECTRUM.csv --artifact {args.out}   (a spectrum of the {artifact.analysis.name} analysis)"
    )
    # not converged between the last two stored times: nothing later to converge to
    late = points_holding_back(rows[-2]) if len(rows) > 1 else []
    wider = artifact.provenance["convergence"].get("wider_unconverged")
    if wider and not late:
        late = wider["points"]
        print(
            f"ℓ ≤ {wider['ell_max']} is resolved but has not converged (held back at {campaign.spec.points_text(late)})"
        )
    if late:
        print(f"to converge there: jaxcr campaign lengthen {args.folder} --points {' '.join(map(str, late))}   "
              "(follows them twice as long; then run and build again)")  # fmt: skip
    return 0


def _parser(prog: str) -> argparse.ArgumentParser:
    ap = CommandParser(prog=prog, description=__doc__)
    sub = ap.add_subparsers(dest="action", required=True)

    def folder(p):
        p.add_argument("folder", type=Path, help="the campaign folder")

    def box(p, required):
        p.add_argument("--sigma2", type=float, nargs=2, metavar=("LO", "HI"), required=required, default=None if required else (0.3, 3.0),
                       help="range of the turbulence level σ² (default 0.3 3)")  # fmt: skip
        p.add_argument("--rho", type=float, nargs=2, metavar=("LO", "HI"), required=required, default=None if required else (0.05, 0.2),
                       help="range of r_L/λ_c (default 0.05 0.2)")  # fmt: skip
        p.add_argument("--points", type=int, nargs="+", default=[5], metavar="N",
                       help="design points per axis (one number, or one for σ² and one for ρ; default 5)")  # fmt: skip

    s = sub.add_parser("create", help="write a campaign's spec (model, times, analyses, design) into FOLDER")
    folder(s)
    box(s, required=False)
    s.add_argument(
        "--nside", type=int, default=32, help="HEALPix nside of the backtracked pixels (lmax = 2·nside − 1; default 32)"
    )
    s.add_argument("--realisations", type=int, default=32,
                   help="field realisations N_B per design point (default 32; 16 made one-sky intervals too narrow)")  # fmt: skip
    s.add_argument("--modes", type=int,
                   help="plane-wave modes N per field (default 16 per decade of wavelength: 32 over 0.1-10 λ_c)")  # fmt: skip
    when = s.add_mutually_exclusive_group()
    when.add_argument("--times", type=float, nargs="+",
                      help="backtracking times ΩT stored, the same for every point")  # fmt: skip
    when.add_argument("--separation-times", type=float, nargs="+", metavar="F",
                      help="times stored as multiples F of each point's separation time t_sep(σ², ρ), the measured "
                      "scale of convergence (default 0.5 1 2 4; see docs/fitting.md)")  # fmt: skip
    s.add_argument("--observatory", nargs="+", choices=OBSERVATORY_CHOICES, default=["icecube", "hawc"],
                   help="analyses whose spectra are stored (default icecube hawc)")  # fmt: skip
    s.add_argument("--b0-ra-dec", type=float, nargs=2, default=(229.2, 11.4), metavar=("RA", "DEC"),
                   help="direction of B0 in degrees, equatorial (default the IBEX local field 229.2 11.4)")  # fmt: skip
    s.add_argument("--gradient-ra-dec", type=float, nargs=2, metavar=("RA", "DEC"),
                   help="direction of the CR gradient, equatorial (default along B0)")  # fmt: skip
    s.add_argument("--lambda-min-over-lc", type=float,
                   help="λ_min/λ_c of the modes (default 0.1, or π·(smallest r_L/λ_c) where smaller, so that every "
                   "design point has gyro-resonant modes)")  # fmt: skip
    s.add_argument("--lambda-max-over-lc", type=float, default=10.0, help="λ_max/λ_c of the modes (default 10)")
    s.add_argument(
        "--dt", type=float, help="Boris step in 1/Ω for every point (default: each point's own default step)"
    )
    s.add_argument("--seed", type=int, default=2026, help="campaign seed; point k uses stream 1 + k (default 2026)")
    s.add_argument("--field-precision", choices=("float64", "fast", "float32"), default="float64",
                   help="accuracy of the field's mode sum: float64 (default, ~1e-13 of b_rms), fast (~1e-9), "
                   "float32 (~3e-7, the cosine and sum in float32 after a float64 phase reduction)")  # fmt: skip
    s.set_defaults(run=_create)
    s = sub.add_parser("run", help="run every missing design point (resumes; finished points are kept)")
    folder(s)
    s.add_argument("--workers", type=int, default=1, help="processes (default 1: one process already uses every core)")
    s.add_argument("--quiet", action="store_true", help="no progress bar (batch jobs)")
    s.set_defaults(run=_run)
    s = sub.add_parser("status", help="how many design points are done, time per point, time left")
    folder(s)
    s.set_defaults(run=_status)
    s = sub.add_parser("extend", help="add a grid of design points (existing points are kept)")
    folder(s)
    box(s, required=True)
    s.set_defaults(run=_extend)
    s = sub.add_parser("lengthen", help="follow design points longer (their times × --factor; the others are kept)")
    folder(s)
    s.add_argument("--points", type=int, nargs="+", required=True, metavar="K",
                   help="design-point indices, e.g. those `artifact` lists as still changing at the last times")  # fmt: skip
    s.add_argument("--factor", type=float, default=2.0, help="how many times longer (default 2)")
    s.set_defaults(run=_lengthen)
    s = sub.add_parser("more-realisations", help="raise N_B at design points (the realisations done are kept)")
    folder(s)
    s.add_argument("--points", type=int, nargs="+", required=True, metavar="K", help="design-point indices (#k)")
    s.add_argument("--realisations", type=int, required=True, metavar="N", help="their new N_B (above the present)")
    s.set_defaults(run=_more_realisations)
    s = sub.add_parser("task", help="compute one design point (a SLURM array task)")
    folder(s)
    s.add_argument("index", type=int, help="the design point's index")
    s.set_defaults(run=_task)
    s = sub.add_parser("slurm", help="write FOLDER/submit.sh, a SLURM job array of the missing points")
    folder(s)
    s.add_argument("--time", default="01:00:00", help="time limit per task (default 01:00:00)")
    s.add_argument("--cpus", type=int, default=4, help="CPU cores per task (default 4)")
    s.add_argument("--mem", default="8G", help="memory per task (default 8G)")
    s.add_argument("--partition", help="SLURM partition")
    s.add_argument("--max-parallel", type=int, help="at most this many tasks at once (the %%N of --array)")
    s.set_defaults(run=_slurm)
    s = sub.add_parser("dask", help="run the missing points on a Dask cluster")
    folder(s)
    s.add_argument("--scheduler", required=True, help="address of the Dask scheduler, e.g. tcp://host:8786")
    s.set_defaults(run=_dask)
    s = sub.add_parser("artifact", help="build the emulator artifact of one analysis of a finished campaign")
    folder(s)
    s.add_argument("--analysis", help="which analysis (default the campaign's first: see `status`)")
    s.add_argument(
        "--ell-max",
        type=int,
        help="largest multipole emulated (default: the largest whose pixel noise passes at the chosen time)",
    )
    s.add_argument(
        "--time", type=float, help="force the model's ΩT (one of the campaign's times) instead of the diagnostic's"
    )
    s.add_argument("--degree", type=int,
                   help="polynomial degree of ln⟨C_ℓ⟩ in (ln σ², ln ρ) (default 2; with --pair-model, of the transfer: 1)")  # fmt: skip
    s.add_argument("--pair-model", nargs="?", const="shipped", metavar="LAW.json",
                   help="carry the (σ², ρ)-dependence by the pair model (jaxcr.pair_model): the shipped law, or LAW.json")  # fmt: skip
    s.add_argument("--fit-sigma2", type=float, nargs=2, metavar=("LO", "HI"),
                   help="with --pair-model: the σ² box fits may use, containing the simulated one")  # fmt: skip
    s.add_argument("--fit-rho", type=float, nargs=2, metavar=("LO", "HI"),
                   help="with --pair-model: the r_L/λ_c box fits may use, containing the simulated one (e.g. 0.001 0.2)")  # fmt: skip
    s.add_argument("--pixel-noise-scatter", choices=[o.value for o in PixelNoiseScatter], default="deconvolved",
                   help="remove the campaign's pixel-noise fluctuations from the moments of ln C_ℓ (deconvolved, "
                   "default) or keep them (kept: the 0.3 artifacts)")  # fmt: skip
    s.add_argument("--sky-scatter", choices=[o.value for o in SkyScatter], default="pooled",
                   help="one sky's covariance of ln C_ℓ: the design points' mean everywhere (pooled, default) or "
                   "also their own averaged about θ (local: fits keep the pooled one in the likelihood and "
                   "--calibrated-intervals draws its toys with the local one; docs/fitting.md)")  # fmt: skip
    s.add_argument("--out", type=Path, required=True, help="the artifact file to write (.npz)")
    s.set_defaults(run=_artifact)
    campaign_thresholds.add_parser(sub)
    return ap


def main(argv=None, prog: str = "jaxcr campaign") -> int:
    args = _parser(prog).parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    return args.run(args)  # errors: one line naming the flag (jaxcr.recipes.command.run_command)
