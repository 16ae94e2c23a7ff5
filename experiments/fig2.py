"""Reproduce Fig. 2 of Ahlers (2015): ⟨C_ℓ⟩(T) for a CR gradient parallel and perpendicular to B0.

    python experiments/fig2.py                    # quick preset (default, about 45 s on 2 CPU cores)
    python experiments/fig2.py --preset paper     # the paper's setup (about 9 minutes on 2 CPU cores)
    python experiments/fig2.py --preset paper --t-max 300 --out results/fig2_paper_T300

Presets (turbulence always σ² = 1, r_L = 0.1 λ_c, λ_min = 0.01 λ_c, λ_max = 100 λ_c, γ = 11/3):

  quick  nside 16 (3072 pixels), N_B = 4 realisations, N = 64 modes, Boris step 0.02/Ω,
         24 log-spaced ΩT from 0.1 to 1000. Shows the physics: low-ℓ saturation, noise ∝ T,
         the standard-diffusion dipole reaching Eq. 6.
  paper  nside 32 (12288 pixels), N_B = 10, N = 256 modes, Boris step 0.02/Ω, 30 log-spaced
         ΩT from 0.1 to 1000 (the paper states neither N nor the range of ΩT; the step and N were
         chosen with experiments/convergence.py, see experiments/README.md).

Maps use the spatial term only (Eq. 7, as in the paper's Fig. 2) unless --fick-term is given.
Writes into --out (default results/fig2_<preset>, with the options that differ from the preset
appended, e.g. results/fig2_quick_t-max300): fig2.png, fig2.nc (all statistics, labelled, with
units, parameters, seed, versions and creation time in its attributes), params.json, and a
checkpoint fig2.ckpt.npz after each time segment: the same command resumes after a crash (and
says so); --fresh deletes the checkpoint and results and runs again. A folder that holds another
configuration's run is refused before anything is written.
"""

# The recipe lives in jaxcr.recipes.fig2 (also the command `jaxcr fig2`); this script runs it.
import sys

from jaxcr.recipes.fig2 import PRESETS, config_from_args, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main(prog="python experiments/fig2.py"))
