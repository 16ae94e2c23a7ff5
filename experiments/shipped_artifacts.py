"""Build the emulator artifacts and the example spectrum shipped with jaxcr (jaxcr/data).

    python experiments/shipped_artifacts.py [--sigma2 0.3 3] [--rho 0.05 0.2] [--nside 32] [--realisations 32] [--points 4]
        [--fit-rho-min RHO]
        [--separation-times 0.5 1 2 4] [--campaign results/shipped_campaign] [--out jaxcr/data]

A campaign of the paper's plane-wave model (σ² 0.3-3, r_L/λ_c 0.05-0.2, 4 × 4 log-spaced design,
N = 32 modes, λ_min/λ_c = 0.1, λ_max/λ_c = 10, B0 and the CR gradient along the local interstellar
field, each point with its own default Boris step, the fast field level) stores the IceCube-like
and HAWC-like analyses' spectra at --separation-times × each point's separation time t_sep(σ², ρ),
so that every point is followed to the same stage of its convergence. For each analysis the
artifact takes the time the
convergence diagnostic chooses (its provenance says whether it converged) and the largest ℓ range
from ℓ = 1 whose pixel noise stays below ⟨C_ℓ⟩ at that time. Then one mock IceCube-like sky at
σ² = 1, r_L/λ_c = 0.1 (|∇n/n| = 0.01/pc, B0 = 3 μG, 20 TeV: a = (|∇n/n| r_L)²) is observed
(Poisson counts of the published event number, time-scrambled background) and written as
example_icecube_spectrum.csv, the spectrum the README's first fit uses. The campaign folder is
resumable; a rerun with the same settings gives the same artifacts (their version hashes).
"""

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jaxcr
from jaxcr import io, units
from jaxcr.inference import Campaign, CampaignSpec, build_artifact, run_campaign
from jaxcr.observations import OBSERVATORIES, save_spectrum
from jaxcr.pair_model import shipped_pair_model_law
from jaxcr.recipes.command import CommandParser, run_command
from jaxcr.sky import LOCAL_INTERSTELLAR_FIELD_RA_DEC, equatorial_direction
from jaxcr.synthetic import mock_sky_spectra

TRUTH = dict(sigma2=1.0, rho=0.1)
GRADIENT_PER_PC, B0_MUG = 0.01, 3.0


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/shipped_artifacts.py", description=__doc__)
    ap.add_argument("--nside", type=int, default=32, help="HEALPix nside of the campaign (default 32)")
    ap.add_argument("--realisations", type=int, default=32, help="N_B per design point (default 32)")
    ap.add_argument("--points", type=int, default=4, help="design points per parameter (default 4)")
    ap.add_argument("--separation-times", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0],
                    help="stored times in units of each point's t_sep(σ², ρ) (default 0.5 1 2 4)")  # fmt: skip
    ap.add_argument("--sigma2", type=float, nargs=2, default=[0.3, 3.0], metavar=("LO", "HI"),
                    help="range of the turbulence level σ² (default 0.3 3)")  # fmt: skip
    ap.add_argument("--rho", type=float, nargs=2, default=[0.05, 0.2], metavar=("LO", "HI"),
                    help="range of r_L/λ_c (default 0.05 0.2)")  # fmt: skip
    ap.add_argument("--fit-rho-min", type=float,
                    help="build the artifacts with the shipped pair-model law (jaxcr.pair_model) and a fit box down to "
                         "this r_L/λ_c, below the simulated box (default: polynomial artifacts on the simulated box)")  # fmt: skip
    ap.add_argument("--campaign", type=Path, default=Path("results/shipped_campaign"), help="campaign folder")
    ap.add_argument("--out", type=Path, default=Path("jaxcr/data"), help="where the artifacts go (default jaxcr/data)")
    args = ap.parse_args(argv)
    io.check_writable("--out", args.out / "icecube.npz")
    b0 = tuple(float(x) for x in equatorial_direction(*LOCAL_INTERSTELLAR_FIELD_RA_DEC))
    model = jaxcr.SpectrumModel(
        nside=args.nside,
        n_realisations=args.realisations,
        turbulence=jaxcr.PlaneWaveGJ99(n_modes=32),
        b0_direction=b0,
        gradient_direction=b0,
        seed=2026,
        field_precision="fast",
    )
    parameters = jaxcr.plane_wave_parametrisation(tuple(args.sigma2), tuple(args.rho))
    analyses = (OBSERVATORIES["icecube"].analysis, OBSERVATORIES["hawc"].analysis)
    spec = CampaignSpec(
        model=model,
        times=tuple(args.separation_times),
        analyses=analyses,
        parameters=parameters,
        design=parameters.grid(args.points),
        step_per_point=True,
        separation_times=True,
    )
    campaign = Campaign.create(args.campaign, spec, exist_ok=True)
    run_campaign(campaign)
    print(campaign.status())
    artifacts = {}
    for analysis in analyses:
        pair = {} if args.fit_rho_min is None else dict(
            pair_model=shipped_pair_model_law(), box={"rho": (args.fit_rho_min, args.rho[1])}
        )  # fmt: skip
        artifacts[analysis.name] = build_artifact(
            campaign, analysis.name, **pair
        )  # ℓ up to what the pixel noise allows
        artifacts[analysis.name].save(args.out / f"{analysis.name}.npz")
        print(artifacts[analysis.name].summary())
    icecube, artifact = OBSERVATORIES["icecube"], artifacts["icecube"]
    r_l = float(units.larmor_radius_pc(icecube.median_energy_tev, B0_MUG))
    (sky,) = mock_sky_spectra(
        TRUTH, model, icecube, time=artifact.time_at(TRUTH), amplitude=(GRADIENT_PER_PC * r_l) ** 2, n_skies=1, seed=7,
        lmax=int(artifact.ells[-1]),
    )  # fmt: skip
    save_spectrum(sky, args.out / "example_icecube_spectrum.csv")
    print(f"wrote {args.out}: icecube.npz, hawc.npz, example_icecube_spectrum.csv ({sky.source})")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("python experiments/shipped_artifacts.py", main))
