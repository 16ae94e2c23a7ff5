"""Reproducible recipe: Mollweide sky maps of δI for gradients parallel and perpendicular to B0.

    python experiments/sky_maps.py [--preset quick|paper] [options]     # the same as `jaxcr sky-maps`

The recipe is jaxcr.recipes.sky_maps; `--help` describes the presets, the options and what is written.
"""

# The recipe lives in jaxcr.recipes.sky_maps (also the command `jaxcr sky-maps`); this script runs it.
import sys

from jaxcr.recipes.command import run_command
from jaxcr.recipes.sky_maps import PRESETS, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(run_command("python experiments/sky_maps.py", lambda: main(prog="python experiments/sky_maps.py")))
