"""The reproducible recipes behind the ``jaxcr`` command and the ``experiments/`` scripts.

Each recipe has presets with per-option overrides, its own output folder named from its
configuration (``--out`` to choose one), ``--fresh`` to start again (a finished or interrupted
run otherwise resumes from its checkpoint), and writes its figure, its data (netCDF with units,
parameters, seed and versions) and ``params.json``:

* :mod:`jaxcr.recipes.fig2`: the paper's Fig. 2 (``jaxcr fig2``, ``experiments/fig2.py``);
* :mod:`jaxcr.recipes.gedanken`: the Liouville gedankenexperiment of Sec. 2 (``jaxcr gedanken``);
* :mod:`jaxcr.recipes.sky_maps`: Mollweide sky maps of δI (``jaxcr sky-maps``).
"""
