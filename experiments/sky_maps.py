"""Sky maps of the relative intensity δI for CR gradients ∥ and ⊥ B0 at several backtracking
times, in Mollweide projection (as the maps of Ahlers & Mertsch 2015).

    python experiments/sky_maps.py [--preset quick|paper] [--t-min 10] [--t-max 1000] [--n-times 3]
        [--remove-ell-max 1] [--energy-tev 10] [--b0-mug 3] [--seed 0] [--out DIR] [--fresh]

One field realisation (σ² = 1, r_L = 0.1 λ_c, λ_min/max = 0.01/100 λ_c, B0 along z); every HEALPix
pixel is backtracked to each of --n-times log-spaced ΩT; δI = r(−T)·g (Eq. 7) with |g| = 1/r_L;
the multipoles ℓ ≤ --remove-ell-max are removed (default 1: monopole and dipole, which dominate at
large ΩT). Presets: quick (nside 32, N = 64 modes, dt 0.02; about 25 s on 2 CPU cores), paper
(nside 64, N = 256; about 4 minutes). The time axis is also given in years for --energy-tev
protons in a --b0-mug field (labels only: the maps depend on r_L/λ_c alone).

Writes sky_maps.png, sky_maps.nc (the maps with and without the removed multipoles, units,
parameters, seed and versions) and params.json into results/sky_maps_<preset>.
"""

# The recipe lives in jaxcr.recipes.sky_maps (also the command `jaxcr sky-maps`); this script runs it.
import sys

from jaxcr.recipes.sky_maps import PRESETS, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main(prog="python experiments/sky_maps.py"))
