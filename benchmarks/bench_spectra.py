"""Benchmark the differentiable spectrum: C_ℓ per second and gradient cost at nside 32 and 64.

    python benchmarks/bench_spectra.py [--nside 32 64] [--batch 10] [--iterations 3]

Times jitted ``angular_power_spectrum`` on a batch of maps (lmax = 2·nside − 1) and
``jax.grad`` of Σ_ℓ w_ℓ C_ℓ, compared with healpy.anafast on one core (same lmax, iter).
"""

import argparse
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).parent))

import healpy as hp
import jax.numpy as jnp
import numpy as np
from _machine import best_of, describe

from jaxcr import angular_power_spectrum


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nside", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=3)
    args = ap.parse_args()
    print(describe())
    for nside in args.nside:
        lmax = 2 * nside - 1
        maps = jnp.asarray(np.random.default_rng(0).normal(size=(args.batch, 12 * nside**2)))
        w = jnp.linspace(0.0, 1.0, lmax + 1)
        spec = jax.jit(lambda m: angular_power_spectrum(m, lmax=lmax, iterations=args.iterations))
        grad = jax.jit(
            jax.grad(lambda m: jnp.sum(w * angular_power_spectrum(m, lmax=lmax, iterations=args.iterations)))
        )
        t_spec = best_of(lambda: spec(maps).block_until_ready())
        t_grad = best_of(lambda: grad(maps).block_until_ready())
        m0 = np.asarray(maps[0])
        t_hp = best_of(lambda: hp.anafast(m0, lmax=lmax, iter=args.iterations))
        print(
            f"nside {nside}, lmax {lmax}, iter {args.iterations}, batch {args.batch}: "
            f"{args.batch / t_spec:.1f} spectra/s ({t_spec / args.batch * 1e3:.2f} ms each); "
            f"gradient {t_grad / args.batch * 1e3:.2f} ms each ({t_grad / t_spec:.2f}x a spectrum); "
            f"healpy.anafast {t_hp * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()
