"""Benchmark the core engine: field mode-evaluations/s and Boris backtracking particle-steps/s.

    python benchmarks/bench_core.py [--modes 256] [--particles 12288] [--steps 200] [--float32]

Paper field (σ² = 1, λ_c = 10 r_L, i.e. r_L = 0.1 λ_c, λ_min = 0.01 λ_c, λ_max = 100 λ_c),
Boris step λ_min/20 as in the reference C++ benchmark (DESIGN §3). Prints the machine.
"""

import argparse
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).parent))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", type=int, default=256)
    ap.add_argument("--particles", type=int, default=12288)
    ap.add_argument("--steps", type=int, default=200, help="Boris steps per particle in the timing run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--float32", action="store_true", help="run in float32 (default float64)")
    ap.add_argument("--chunk", type=int, nargs="+", default=[0, 512, 2048],
                    help="particle_chunk values to time (0: all particles in one vmap)")
    args = ap.parse_args()
    jax.config.update("jax_enable_x64", not args.float32)
    import jax.numpy as jnp

    import jaxcr
    from _machine import best_of, describe

    print(describe())
    dtype = "float32" if args.float32 else "float64"
    params = jaxcr.TurbulenceParameters.paper(n_modes=args.modes)
    field = jaxcr.PlaneWaveTurbulence.sample(0, params)
    pts = jax.random.uniform(jax.random.key(1), (args.particles, 3), minval=-100.0, maxval=100.0)
    evaluate = jax.jit(lambda f, r: f(r))
    t = best_of(lambda: evaluate(field, pts).block_until_ready(), args.repeats)
    rate = args.particles * args.modes / t
    print(f"field: N={args.modes} modes, {args.particles} points, {dtype}: {t * 1e3:.2f} ms/eval, "
          f"{rate:.3g} mode-evaluations/s")

    dt = float(jaxcr.default_step(field))  # λ_min/20 = 0.005 / Ω for the paper field
    T = dt * args.steps
    n = jax.random.normal(jax.random.key(2), (args.particles, 3))
    n = n / jnp.linalg.norm(n, axis=-1, keepdims=True)
    for chunk in args.chunk:
        opts = dict(dt=dt, particle_chunk=chunk or None)
        run = lambda: jaxcr.backtrack(field, n, [T], **opts).positions.block_until_ready()  # noqa: E731
        t = best_of(run, args.repeats)
        psteps = args.particles * args.steps / t
        print(f"backtracking: Boris, N={args.modes} modes, {args.particles} particles, dt={dt:.4g}/Ω "
              f"(λ_min/20), {args.steps} steps, particle_chunk={chunk or 'none'}, {dtype}: {t:.3f} s, "
              f"{psteps:.3g} particle-steps/s, {psteps * args.modes:.3g} mode-evaluations/s inside the solver")

if __name__ == "__main__":
    main()
