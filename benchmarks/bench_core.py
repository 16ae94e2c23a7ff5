"""Benchmark the core engine: field mode-evaluations/s and Boris backtracking particle-steps/s.

    python benchmarks/bench_core.py [--modes 64 256 1024] [--particles 12288] [--steps 200]
                                    [--precision float64 float32] [--chunk 0]

Paper field (σ² = 1, λ_c = 10 r_L, i.e. r_L = 0.1 λ_c, λ_min = 0.01 λ_c, λ_max = 100 λ_c),
Boris step λ_min/20 as in the reference C++ benchmark (CRPropa 3). Positions are float64
throughout; ``--precision float32`` evaluates cos and the mode sum in float32 after a float64
phase reduction (``PlaneWaveTurbulence.with_precision``). Prints the machine, every parameter
and the peak resident memory of the process.
"""

import argparse
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).parent))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--particles", type=int, default=12288)
    ap.add_argument("--steps", type=int, default=200, help="Boris steps per particle in the timing run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    ap.add_argument(
        "--chunk", type=int, nargs="+", default=[0], help="particle_chunk values to time (0: all particles in one vmap)"
    )
    args = ap.parse_args()
    import jax.numpy as jnp
    from _machine import best_of, describe, peak_memory_mb

    import jaxcr

    print(describe())
    pts = jax.random.uniform(jax.random.key(1), (args.particles, 3), minval=-100.0, maxval=100.0)
    n = jax.random.normal(jax.random.key(2), (args.particles, 3))
    n = n / jnp.linalg.norm(n, axis=-1, keepdims=True)
    evaluate = jax.jit(lambda f, r: f(r))
    for modes in args.modes:
        base = jaxcr.PlaneWaveTurbulence.sample(0, jaxcr.TurbulenceParameters.paper(n_modes=modes))
        dt = float(jaxcr.default_step(base))  # λ_min/20 = 0.0052/Ω for the paper field
        for precision in args.precision:
            field = base.with_precision(precision)
            t = best_of(lambda: evaluate(field, pts).block_until_ready(), args.repeats)
            print(
                f"field: N={modes} modes, {args.particles} points, {precision} mode sum: {t * 1e3:.2f} ms/eval, "
                f"{args.particles * modes / t:.3g} mode-evaluations/s",
                flush=True,
            )
            for chunk in args.chunk:
                opts = dict(solver=jaxcr.Boris(dt=dt), particle_chunk=chunk or None)
                run = lambda: jaxcr.backtrack(field, n, [dt * args.steps], **opts).positions.block_until_ready()
                t = best_of(run, args.repeats)
                psteps = args.particles * args.steps / t
                print(
                    f"backtracking: Boris, N={modes} modes, {args.particles} particles, dt={dt:.4g}/Ω (λ_min/20), "
                    f"{args.steps} steps, particle_chunk={chunk or 'none'}, {precision} mode sum: {t:.3f} s, "
                    f"{psteps:.3g} particle-steps/s, {psteps * modes:.3g} mode-evaluations/s inside the solver",
                    flush=True,
                )
    print(f"peak resident memory: {peak_memory_mb():.0f} MB")


if __name__ == "__main__":
    main()
