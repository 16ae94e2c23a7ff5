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


def gpu_description() -> str:
    """``nvidia-smi``'s name, memory, driver, highest SM clock and compute capability of the GPUs
    (one CSV line each), or why it could not be asked."""
    import subprocess

    query = "--query-gpu=name,memory.total,driver_version,clocks.max.sm,compute_cap"
    try:
        return subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        return repr(err)


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


def alternating(fns: dict, rounds: int = 3) -> dict:
    """Median wall time of each callable in ``fns`` over ``rounds`` rounds, the callables run in
    turn within each round (one warm-up call each first), so drifts of the machine hit all alike."""
    import statistics

    for fn in fns.values():
        fn()
    times: dict = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


class Sections:
    """Budgeted benchmark sections: each runs if its estimated need fits the time left, a failure
    is recorded with its traceback without stopping the rest, and ``record`` is written to
    ``path`` (atomically) after every section."""

    def __init__(self, budget_s: float, path, record: dict, only=None):
        self.start, self.budget, self.path, self.record, self.only = time.perf_counter(), budget_s, path, record, only
        record.setdefault("errors", {})

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def save(self) -> None:
        import json
        from pathlib import Path

        from jaxcr.io import atomic_write

        text = json.dumps(self.record, indent=1, default=str)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))

    def run(self, name: str, fn, need_s: float) -> None:
        import traceback

        if self.only and name not in self.only:
            return
        if self.left() < need_s:
            print(f"[skip] {name}: {self.left():.0f} s left < {need_s} s", flush=True)
            self.record.setdefault("skipped", []).append(name)
            return
        t = time.perf_counter()
        try:
            fn()
        except Exception:
            self.record["errors"][name] = traceback.format_exc()[-3000:]
            print(f"[error] {name}:\n{self.record['errors'][name]}", flush=True)
        print(f"[done] {name} in {time.perf_counter() - t:.1f} s; {self.left():.0f} s left", flush=True)
        self.save()
