"""Progress bars for runs whose first unit of work includes compiling.

A tqdm bar only redraws when it advances, so the minute of compiling before the first segment (or
design point) would show a frozen "0s". :func:`ticking` redraws it every second from a thread,
so the elapsed time runs; :func:`show_eta` switches the format from "compiling, elapsed" to a bar
without an ETA, then to tqdm's own once the rate has been measured on ``timed`` units of work
after the compiled one (an ETA from the compiling unit, or from one unit, is off by factors).
"""

from __future__ import annotations

import contextlib
import threading

COMPILING = "{desc}{elapsed} elapsed{postfix}"  # tqdm writes desc as "desc: "
MEASURING = "{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}, ETA after the next one{postfix}]"
ETA_AFTER = 2  # units of work timed after the compiling one before an ETA is shown


@contextlib.contextmanager
def ticking(bar, every_s: float = 1.0):
    """Redraw ``bar`` every ``every_s`` seconds while the block runs (nothing if it is disabled)."""
    if bar.disable:
        yield bar
        return
    stop = threading.Event()

    def tick():
        while not stop.wait(every_s):
            bar.refresh()

    thread = threading.Thread(target=tick, name="jaxcr-progress", daemon=True)
    thread.start()
    try:
        yield bar
    finally:
        stop.set()
        thread.join()


def show_eta(bar, timed_units: int) -> None:
    """The format for ``timed_units`` units of work timed after the compiling one."""
    bar.bar_format = None if timed_units >= ETA_AFTER else MEASURING
