"""``python -m jaxcr``: the ``jaxcr`` command (what SLURM array tasks call)."""

import sys

from .cli import main

sys.exit(main())
