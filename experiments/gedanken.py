"""The Liouville gedankenexperiment of Ahlers (2015), Sec. 2.

    python experiments/gedanken.py                 # quick preset (default, a few minutes on 2 cores)
    python experiments/gedanken.py --preset paper  # finer sky, more realisations

A homogeneous dipole initial distribution f̃(p̂) = ẑ·p̂ is evolved by Liouville's theorem,
f(T, 0, p̂) = f̃(p̂(−T)), by backtracking every HEALPix pixel through (a) pure isotropic
turbulence (B0 = 0; the field unit is then the rms turbulent field, σ² = 1) and (b) turbulence
on a regular field B0 = ẑ (σ² = 1). For each it records ⟨C_ℓ⟩(T), ℓ = 0..lmax, the sum
(1/4π)Σ(2ℓ+1)⟨C_ℓ⟩ (conserved by Eq. 3; jaxcr also records the pixel mean square ⟨f²⟩, the
all-ℓ value, because power that cascades beyond lmax leaves the truncated sum), and the late-time
⟨C_ℓ⟩/⟨C_1⟩ against Ahlers' asymptotic model (Eq. 4). Rigidity r_L = 0.1 λ_c as in Fig. 2.

Presets:
  quick  nside 16, N_B = 4, N = 64 modes, dt = 0.02/Ω, 20 log-spaced ΩT from 0.1 to 300.
  paper  nside 32, N_B = 10, N = 256 modes, dt = 0.02/Ω, 24 log-spaced ΩT from 0.1 to 300.

Writes into --out (default results/gedanken_<preset>): gedanken.png, gedanken_b0_<0|1>.nc,
ratios.json (measured late-time ratios next to Eq. 4, at every ΩT), params.json; resumable.
"""

# The recipe lives in jaxcr.recipes.gedanken (also the command `jaxcr gedanken`); this script runs it.
import sys

from jaxcr.recipes.gedanken import PRESETS, config, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main(prog="python experiments/gedanken.py"))
