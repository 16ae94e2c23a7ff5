"""Reproducible recipe: the paper's Fig. 2, ⟨C_ℓ⟩(T) for CR gradients parallel and perpendicular to B0.

    python experiments/fig2.py [--preset quick|paper] [options]     # the same as `jaxcr fig2`

The recipe is jaxcr.recipes.fig2; `--help` describes the presets, the options and what is written.
"""

# The recipe lives in jaxcr.recipes.fig2 (also the command `jaxcr fig2`); this script runs it.
import sys

from jaxcr.recipes.command import run_command
from jaxcr.recipes.fig2 import PRESETS, config_from_args, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(run_command("python experiments/fig2.py", lambda: main(prog="python experiments/fig2.py")))
