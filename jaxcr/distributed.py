"""Several hosts: start JAX's multi-controller runtime so that ``devices="all"`` spans them.

jaxcr parallelises over particles with ``jax.shard_map`` (:func:`jaxcr.track`): the field is
replicated, every device backtracks its share of the pixels with no collective inside the
solver loop, and one all-gather at the end gives every process the full result. On several
hosts the same program runs once per host (or per GPU); :func:`initialize` connects them, after
which ``jax.devices()`` lists the devices of all processes and ``run_ensemble(cfg,
devices="all")`` / ``backtrack(..., devices="all")`` use them all. Only process 0 writes files.

Launch recipes (the script calls ``jaxcr.distributed.initialize()`` before anything else)::

    # SLURM: one task per node (or per GPU); JAX reads the SLURM environment itself
    #SBATCH --nodes=4 --ntasks-per-node=1 --gpus-per-task=4
    srun python run.py

    # Open MPI: JAX reads the OMPI_* environment
    mpirun -np 4 python run.py

    # by hand (any launcher, or several processes on one machine for testing)
    JAXCR_COORDINATOR=host0:29500 JAXCR_NUM_PROCESSES=2 JAXCR_PROCESS_ID=0 python run.py   # on host0
    JAXCR_COORDINATOR=host0:29500 JAXCR_NUM_PROCESSES=2 JAXCR_PROCESS_ID=1 python run.py   # on host1

On CPU hosts the cross-process collectives use gloo (set here). Tested with two processes on one
machine (tests/test_sharding.py): the result equals the single-process one bit for bit when every
device gets the same number of particles.
"""

from __future__ import annotations

import os

import jax

__all__ = ["initialize", "is_writer"]


def initialize(
    coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None, **kwargs
) -> None:
    """Connect this process to the others (``jax.distributed.initialize``).

    Arguments default to the environment variables ``JAXCR_COORDINATOR`` (host:port),
    ``JAXCR_NUM_PROCESSES`` and ``JAXCR_PROCESS_ID``; if none are set, JAX detects SLURM and
    Open MPI launches by itself. Call it before any other JAX call. Extra keyword arguments go
    to ``jax.distributed.initialize`` (e.g. ``local_device_ids``).
    """
    env = os.environ
    coordinator_address = coordinator_address or env.get("JAXCR_COORDINATOR")
    if num_processes is None and "JAXCR_NUM_PROCESSES" in env:
        num_processes = int(env["JAXCR_NUM_PROCESSES"])
    if process_id is None and "JAXCR_PROCESS_ID" in env:
        process_id = int(env["JAXCR_PROCESS_ID"])
    given = [x is not None for x in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError(
            "give all of coordinator_address, num_processes and process_id (or JAXCR_COORDINATOR, "
            "JAXCR_NUM_PROCESSES, JAXCR_PROCESS_ID), or none of them for SLURM / Open MPI detection"
        )
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}); got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts; GPUs use NCCL
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id, **kwargs
    )


def is_writer() -> bool:
    """True on the process that writes files (process 0)."""
    return jax.process_index() == 0
