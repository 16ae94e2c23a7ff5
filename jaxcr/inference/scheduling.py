"""Running a campaign's tasks: in this process, a local process pool, a SLURM job array, Dask.

Every runner calls :meth:`jaxcr.inference.campaign.Campaign.run_task` for the pending design
points; each task writes its own file atomically, so runners can be mixed, killed and restarted
(a point already on disk is never recomputed).
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterable

from .. import _checks
from .._version import __version__
from .campaign import Campaign

__all__ = ["run_campaign", "run_campaign_dask", "slurm_script"]


def _run_one(args) -> int:
    folder, index = args
    import jax

    jax.config.update("jax_enable_x64", True)
    Campaign.open(folder).run_task(index)
    return index


def run_campaign(campaign: Campaign, workers: int = 1, progress: bool = True, indices: Iterable[int] | None = None):
    """Run the pending design points (or ``indices``): in this process (``workers`` = 1; the
    backtracking already uses every core) or in a pool of ``workers`` processes (many-core
    machines; each process compiles the model once). Returns the indices computed."""
    from tqdm.auto import tqdm

    from .._progress import COMPILING, show_eta, ticking

    _checks.check_positive_int("workers", workers)
    campaign.check_points()  # a damaged point file is found before the work, not at the artifact
    left = campaign.work_left()
    todo = list(left) if indices is None else [k for k in indices if k in left]
    work = {k: left[k] for k in todo}
    bar = tqdm(
        total=sum(work.values()),
        disable=not progress,
        desc=f"campaign {campaign.folder.name}: compiling and the first point",
        unit=" particle-steps",
        unit_scale=True,
        smoothing=0,
        bar_format=COMPILING,
    )
    done: list[int] = []

    def finished(k: int) -> None:
        # the rate is measured after the first point, which compiles (jaxcr._progress)
        bar.update(work[k])
        done.append(k)
        show_eta(bar, len(done) - 1)
        if len(done) == 1:
            bar.set_description(f"campaign {campaign.folder.name}")
            bar.initial, bar.start_t = bar.n, time.time()
        bar.set_postfix_str(f"{len(done)}/{len(todo)} points")

    with ticking(bar):
        if workers == 1:
            for k in todo:
                campaign.run_task(k)
                finished(k)
        else:
            import concurrent.futures
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")  # JAX is not fork-safe
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                for k in pool.map(_run_one, [(str(campaign.folder), k) for k in todo]):
                    finished(k)
    bar.close()
    return todo


def run_campaign_dask(campaign: Campaign, client, indices: Iterable[int] | None = None) -> list[int]:
    """Run the pending design points as tasks of a Dask ``distributed.Client`` (the workers must
    see the campaign folder, e.g. on a shared file system, and have jaxcr installed)."""
    todo = campaign.pending() if indices is None else list(indices)
    futures = client.map(_run_one, [(str(campaign.folder.resolve()), k) for k in todo], pure=False)
    return list(client.gather(futures))


def _ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] → '0-2,5,7-8' (SLURM array syntax)."""
    out, start = [], None
    for i, k in enumerate(indices):
        if start is None:
            start = k
        if i + 1 == len(indices) or indices[i + 1] != k + 1:
            out.append(f"{start}" if start == k else f"{start}-{k}")
            start = None
    return ",".join(out)


def slurm_script(
    campaign: Campaign,
    *,
    time_limit: str = "01:00:00",
    cpus_per_task: int = 4,
    memory: str = "8G",
    partition: str | None = None,
    python: str | None = None,
    max_parallel: int | None = None,
) -> str:
    """A SLURM job-array script that runs every pending design point as one array task.

    Submit with ``sbatch``; rerun :func:`slurm_script` after a partial run to submit only what is
    still missing (finished points are never recomputed). Each task calls
    ``python -m jaxcr campaign task FOLDER INDEX``, which writes its own file atomically.
    """
    pending = campaign.pending()
    if not pending:
        raise ValueError(f"every design point of {campaign.folder} is done: nothing to submit")
    _checks.check_positive_int("cpus_per_task", cpus_per_task)
    python = python or sys.executable
    array = _ranges(pending) + (f"%{_checks.check_positive_int('max_parallel', max_parallel)}" if max_parallel else "")
    folder = campaign.folder.resolve()
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=jaxcr-{folder.name}",
        f"#SBATCH --array={array}",
        f"#SBATCH --cpus-per-task={cpus_per_task}",
        f"#SBATCH --mem={memory}",
        f"#SBATCH --time={time_limit}",
        f"#SBATCH --output={shlex.quote(str(folder / 'logs'))}/%A_%a.out",
    ]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    lines += [
        f"# generated by jaxcr {__version__}: {len(pending)} of {len(campaign.spec.design)} design points pending",
        "set -euo pipefail",
        f'{shlex.quote(python)} -m jaxcr campaign task {shlex.quote(str(folder))} "$SLURM_ARRAY_TASK_ID"',
        "",
    ]
    (folder / "logs").mkdir(exist_ok=True)
    return "\n".join(lines)
