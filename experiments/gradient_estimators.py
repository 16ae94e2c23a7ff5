"""Compare the four gradient estimators at short and long backtracking times, beside λ.

    python experiments/gradient_estimators.py [--times 3 300] [--nside 2] [--realisations 8]

For θ = (ln σ², ln ρ) at σ² = 1, ρ = r_L/λ_c = 0.1 (Gaussian mode amplitudes, so the score
function applies) it estimates J = d⟨C_ℓ⟩/dθ with pathwise AD, CRN central differences, SPSA and
the score function, and prints J for ℓ = 1, 2 with standard errors, the maximal Lyapunov exponent
λ of the same field and λT. Writes results/gradient_estimators.json.
"""

import json
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np

import jaxcr
from jaxcr.inference import experimental as inference
from jaxcr.recipes.command import CommandParser, run_command
from jaxcr.spectrum_model import SpectrumModel
from jaxcr.turbulence_model import PlaneWaveGJ99

ESTIMATORS = {
    "pathwise": inference.Pathwise(),
    "crn": inference.CRN(step=0.05),
    "spsa": inference.SPSA(step=0.05),
    "score": inference.Score(step=0.05),
}


def main(argv=None):
    ap = CommandParser(prog="python experiments/gradient_estimators.py", description=__doc__)
    ap.add_argument("--times", type=float, nargs="+", default=[3.0, 300.0], help="backtracking times ΩT to compare at")
    ap.add_argument("--nside", type=int, default=2, help="HEALPix nside of the model (default 2)")
    ap.add_argument("--realisations", type=int, default=8, help="field realisations (default 8)")
    ap.add_argument("--modes", type=int, default=16, help="plane-wave modes (default 16)")
    ap.add_argument(
        "--out", type=Path, default=Path("results/gradient_estimators.json"), help="the JSON file of results to write"
    )
    args = ap.parse_args(argv)
    theta = jnp.array([0.0, np.log(0.1)])
    rows = []
    for T in args.times:
        turbulence = PlaneWaveGJ99(n_modes=args.modes, gaussian_amplitudes=True)
        model = SpectrumModel(nside=args.nside, n_realisations=args.realisations, time=T, turbulence=turbulence)
        model = model.resolved(inference.plane_wave_values(theta))
        field = jaxcr.PlaneWaveTurbulence.sample(
            0,
            jaxcr.TurbulenceParameters(
                coherence_length=10.0,
                lambda_min=turbulence.lambda_min_over_lc * 10,
                lambda_max=turbulence.lambda_max_over_lc * 10,
                n_modes=args.modes,
            ),
        )
        lyap = jaxcr.chaos.lyapunov_exponent(field, jaxcr.pixel_directions(2), 200.0, dt=model.dt)
        for method, estimator in ESTIMATORS.items():
            t0 = time.perf_counter()
            est = inference.estimate_gradient(theta, model, estimator)
            row = dict(
                T=T,
                method=method,
                columns=list(est.methods),
                wall_s=round(time.perf_counter() - t0, 2),
                lyapunov=float(lyap.exponent),
                lambda_T=float(lyap.exponent) * T,
                J=np.asarray(est.jacobian[1:3]).tolist(),
                J_se=np.asarray(est.jacobian_stderr[1:3]).tolist(),
            )
            rows.append(row)
            fmt = lambda a, b: "  ".join(f"{x:+.3e}±{y:.1e}" for x, y in zip(np.ravel(a), np.ravel(b)))
            print(
                f"ΩT={T:g} λT={row['lambda_T']:.1f} {method:>8}: dC1/dlnσ², dC1/dlnρ, dC2/dlnσ², dC2/dlnρ = "
                f"{fmt(row['J'], row['J_se'])}",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            dict(args={k: str(v) for k, v in vars(args).items()}, rows=rows, jaxcr_version=jaxcr.__version__), indent=1
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(run_command("python experiments/gradient_estimators.py", main))
