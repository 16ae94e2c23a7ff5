"""Reproducible recipe: the Liouville gedankenexperiment of Sec. 2 (conserved sum, ratios of Eq. 4).

    python experiments/gedanken.py [--preset quick|paper] [options]     # the same as `jaxcr gedanken`

The recipe is jaxcr.recipes.gedanken; `--help` describes the presets, the options and what is written.
"""

# The recipe lives in jaxcr.recipes.gedanken (also the command `jaxcr gedanken`); this script runs it.
import sys

from jaxcr.recipes.command import run_command
from jaxcr.recipes.gedanken import PRESETS, config, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(run_command("python experiments/gedanken.py", lambda: main(prog="python experiments/gedanken.py")))
