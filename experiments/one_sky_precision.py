"""The precision one observed sky can give, by ℓ range and noise: Fisher forecasts on artifacts.

    python experiments/one_sky_precision.py --artifact icecube=results/campaign_fits/icecube.npz \\
        --artifact hawc=results/campaign_fits/hawc.npz [--sigma2 1] [--rho 0.1] \\
        [--gradient-per-pc 0.01] [--b0-mug 3] [--out results/one_sky_precision]

For each artifact (named after an observatory preset, whose energy, event number and estimator
set r_L and the shot-noise level N) it forecasts the 1σ of ln σ² and ln ρ (≈ relative errors)
from one sky (jaxcr.inference.precision.expected_precision: the Fisher matrix of the one-sky
likelihood, cosmic variance from the emulator, correlated across ℓ), for ℓ up to 5, 10, 15, 20,
… the artifact's lmax, with the gradient known and with the amplitude free, and for the noise
level N/100, N and 100 N (the measurement error of C_ℓ from noise is sqrt(2/(2ℓ+1))·N). Prints a
table and writes precision.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

from jaxcr import io, units
from jaxcr.inference.artifact import EmulatorArtifact
from jaxcr.inference.precision import expected_precision
from jaxcr.observations import OBSERVATORIES
from jaxcr.recipes.command import CommandParser, run_command


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/one_sky_precision.py", description=__doc__)
    ap.add_argument("--artifact", action="append", required=True, metavar="OBSERVATORY=PATH",
                    help="an artifact and the observatory preset it models (repeat)")  # fmt: skip
    ap.add_argument("--sigma2", type=float, default=1.0, help="σ² of the forecast (default 1)")
    ap.add_argument("--rho", type=float, default=0.1, help="r_L/λ_c of the forecast (default 0.1)")
    ap.add_argument("--gradient-per-pc", type=float, default=0.01, help="CR gradient |∇n/n| in 1/pc (default 0.01)")
    ap.add_argument("--b0-mug", type=float, default=3.0, help="B0 in μG (default 3)")
    ap.add_argument("--out", type=Path, default=Path("results/one_sky_precision"), help="output folder")
    args = ap.parse_args(argv)
    io.check_writable("--out", args.out / "precision.json")
    rows = []
    for item in args.artifact:
        name, _, path = item.partition("=")
        if name not in OBSERVATORIES or not path:
            ap.error(f"--artifact must be OBSERVATORY=PATH with OBSERVATORY in {sorted(OBSERVATORIES)}; got {item!r}")
        obs = OBSERVATORIES[name]
        art = EmulatorArtifact.load(path)
        r_l = float(units.larmor_radius_pc(obs.median_energy_tev, args.b0_mug))
        amplitude = (args.gradient_per_pc * r_l) ** 2
        noise = obs.noise_level()
        print(f"{obs.name}: r_L = {r_l:.3g} pc, a = {amplitude:.3g}, noise level N = {noise:.3g}; {art.summary()}")
        ell_maxes = [e for e in (5, 10, 15, 20, 25, 30, 40) if e <= art.ells[-1]] or [int(art.ells[-1])]
        for scale in (0.01, 1.0, 100.0):
            for known in (True, False):
                for ell_max in ell_maxes:
                    p = expected_precision(
                        art, dict(sigma2=args.sigma2, rho=args.rho), amplitude, ell_max=ell_max, noise_level=scale * noise,
                        amplitude_known=known,
                    )  # fmt: skip
                    rows.append(dict(observatory=name, noise_scale=scale, amplitude_known=known, **p))
                    print(
                        f"  N×{scale:<7g} gradient {'known' if known else 'free '}  ℓ ≤ {ell_max:2d}: "
                        f"1σ ln σ² = {p['sigma2']:.2f}, ln ρ = {p['rho']:.2f}"
                        + (f", ln a = {p['amplitude']:.2f}" if not known else "")
                        + f" (correlation {p['correlation']:+.2f}; best: {p['best_combination']} "
                        f"= {p['best_combination_sigma']:.2f})"
                    )
    io.write_json(args.out / "precision.json", dict(settings=vars(args), rows=rows))
    print(f"wrote {args.out / 'precision.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("python experiments/one_sky_precision.py", main))
