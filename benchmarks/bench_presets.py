"""Wall time and peak memory of the Fig. 2 presets, and the cost of one fit step.

    python benchmarks/bench_presets.py [--paper-t-max 20] [--skip-quick]

1. The quick Fig. 2 preset, run to completion (experiments/fig2.py, ΩT ≤ 10³).
2. The paper preset (nside 32, N_B = 10, N = 256, dt = 0.02) run to ΩT = --paper-t-max / 2 and
   to --paper-t-max; the difference gives the backtracking rate and the extrapolated wall time to
   ΩT = 10³ (the full run takes ~45-90 min on 2 cores; `python experiments/fig2.py --preset
   paper` times it for real).
3. One fit step: ``inference.experimental.estimate_gradient`` (CRN, h = 0.2) of the quick fit model (nside 4, 32
   realisations, N = 32, ΩT = 20), i.e. five spectra of 32 backtracked skies plus the Lyapunov
   exponent, after compilation.

Each Fig. 2 run is a child process; its peak resident memory is read from its own
``getrusage``. Memory does not grow with the number of steps (only save times are stored).
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import best_of, describe

CHILD = """
import os, resource, runpy, sys, time
sys.argv = {argv!r}
sys.path.insert(0, os.path.dirname({script!r}))
t = time.perf_counter()
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit as e:
    if e.code not in (None, 0):
        raise
print("BENCH", time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def run_fig2(extra):
    script = str(HERE.parent / "experiments" / "fig2.py")
    with tempfile.TemporaryDirectory() as out:
        argv = [script, "--no-progress", "--out", out, *extra]
        proc = subprocess.run(
            [sys.executable, "-c", CHILD.format(argv=argv, script=script)], capture_output=True, text=True
        )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    line = [x for x in proc.stdout.splitlines() if x.startswith("BENCH")][-1]
    wall, rss = map(float, line.split()[1:])
    return wall, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paper-t-max", type=float, default=40.0)
    ap.add_argument("--skip-quick", action="store_true")
    ap.add_argument("--skip-fit", action="store_true")
    args = ap.parse_args()
    print(describe())
    record = dict(machine=describe())
    if not args.skip_quick:
        wall, rss = run_fig2([])
        print(
            f"Fig. 2 quick preset (nside 16, N_B 4, N 64, dt 0.02, ΩT ≤ 1000, 24 times): wall {wall:.1f} s, "
            f"peak memory {rss:.0f} MB",
            flush=True,
        )
        record["quick"] = dict(wall_s=wall, peak_rss_mb=rss)
    # Two truncated paper runs with the same 10 save times: the difference of their wall times is
    # the backtracking alone (start-up, compilation and per-save statistics cancel).
    t_short, t_long = args.paper_t_max / 2, args.paper_t_max
    paper = ["--preset", "paper", "--t-min", "0.1", "--n-times", "10"]
    wall_s, _ = run_fig2([*paper, "--t-max", str(t_short)])
    wall_l, rss = run_fig2([*paper, "--t-max", str(t_long)])
    particles = 12 * 32**2 * 10
    rate = particles * (t_long - t_short) / 0.02 / (wall_l - wall_s)
    full = particles * 1000 / 0.02 / rate + wall_s  # + the fixed costs of a run (an upper bound for them)
    print(
        f"Fig. 2 paper preset (nside 32, N_B 10, N 256, dt 0.02, 10 times) to ΩT = {t_short:g} / {t_long:g}: "
        f"wall {wall_s:.1f} / {wall_l:.1f} s, peak memory {rss:.0f} MB; backtracking {rate:.3g} particle-steps/s "
        f"→ ΩT = 10³ extrapolated {full / 60:.1f} min",
        flush=True,
    )
    record["paper"] = dict(
        t_max=[t_short, t_long],
        wall_s=[wall_s, wall_l],
        peak_rss_mb=rss,
        particle_steps_per_s=rate,
        extrapolated_wall_s_to_1000=full,
    )
    if not args.skip_fit:
        import jax.numpy as jnp
        import numpy as np

        from jaxcr.inference import experimental as inference
        from jaxcr.spectrum_model import SpectrumModel
        from jaxcr.turbulence_model import PlaneWaveGJ99

        model = SpectrumModel(nside=4, n_realisations=32, time=20.0, turbulence=PlaneWaveGJ99(n_modes=32))
        theta = jnp.array([0.0, np.log(0.1)])
        t = best_of(lambda: inference.estimate_gradient(theta, model, inference.CRN(step=0.2)), 2)
        print(
            f"fit step (estimate_gradient, CRN, nside 4, 32 realisations, N 32, ΩT 20, with λ): {t:.2f} s", flush=True
        )
        record["fit_step_s"] = t
    import jaxcr

    record.update(args=vars(args), jaxcr_version=jaxcr.__version__)
    jaxcr.io.atomic_write(
        Path("results") / "bench_presets.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1))
    )


if __name__ == "__main__":
    main()
