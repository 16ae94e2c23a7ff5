"""Shared benchmark helpers: the machine description every benchmark prints, and timing."""

import os
import platform
import resource
import time

import jax


def describe() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    devs = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return (
        f"machine: {cpu}; {os.cpu_count()} cores; jax {jax.__version__} on {jax.default_backend()} "
        f"({len(jax.devices())} device(s): {devs}); x64={jax.config.jax_enable_x64}"
    )


def timed(fn, repeats: int = 3) -> tuple[float, float]:
    """(wall time of the first call, compilation included; best of ``repeats`` further calls)."""
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times[0], min(times[1:])


def best_of(fn, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` after one warm-up (compilation) call."""
    return timed(fn, repeats)[1]


def peak_memory_mb() -> float:
    """Peak resident set size of this process (Linux ru_maxrss is in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
