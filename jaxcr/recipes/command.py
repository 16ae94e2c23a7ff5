"""How every jaxcr command behaves: one-line errors that name the flag, resumable interrupts.

* :class:`CommandParser`: argparse whose errors are one line, ``PROG: error: MESSAGE (see PROG
  --help)``, exit status 2.
* :func:`run_command`: runs a command's ``main``; a bad value found after parsing (a
  ``ValueError``/``TypeError`` from the library, a refused file) is one line on stderr naming the
  flag (``ell_max`` becomes ``--ell-max``), exit status 2; Ctrl-C or SIGTERM print what to do
  ("rerun the same command to resume": runs checkpoint as they go) and exit 130 or 143.
  ``JAXCR_TRACEBACK=1`` shows the full traceback of an error instead.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Callable

__all__ = ["CommandParser", "run_command", "as_flags", "FLAGS"]

# library parameter → the flag the commands give it, where the two are not the same word
FLAGS = {
    "dt": "--dt",
    "n_realisations": "--realisations",
    "n_modes": "--modes",
    "b0_microgauss": "--b0-mug",
    "n_resamples": "--resamples",
}


class CommandParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` with one-line errors (module docstring)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Interrupted(BaseException):
    """SIGTERM, turned into an exception so that the run stops where Ctrl-C would stop it (a
    BaseException, like KeyboardInterrupt, so that no `except Exception` turns it into an error)."""


def _on_sigterm(signum, frame):
    raise Interrupted


def as_flags(message: str, flags: dict[str, str] | None = None) -> str:
    """``message`` with Python parameter names replaced by their command-line flags where it names
    them as a parameter (``ell_max must``, ``ell_max=``, ``pass ell_max``; any name that opens the
    message with "must"): ``flags`` maps a parameter name to its flag, other names map to
    ``--name-with-dashes``."""
    flags = FLAGS | (flags or {})
    names = set(re.findall(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b", message)) | set(flags)
    first = re.match(r"([a-z][a-z0-9_]*) must\b", message)  # "nside must be ...": the parameter it names
    if first:
        names.add(first.group(1))
    for name in sorted(names, key=len, reverse=True):
        flag = flags.get(name, "--" + name.replace("_", "-"))
        message = re.sub(rf"(?<![\w.-]){re.escape(name)}(?=\s+must\b|=|\s+=)", flag, message)
        message = re.sub(rf"\b(pass|give|with|raise|lower) {re.escape(name)}\b", rf"\1 {flag}", message)
    return message


def run_command(prog: str, main: Callable[[], int], flags: dict[str, str] | None = None) -> int:
    """Run ``main()`` as the command ``prog`` (module docstring); returns the exit status."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; what was finished is saved: rerun the same command to resume", file=sys.stderr)
        return 130
    except Interrupted:
        print(f"{prog}: terminated; what was finished is saved: rerun the same command to resume", file=sys.stderr)
        return 143
    except SystemExit as stop:
        if isinstance(stop.code, str):
            text = stop.code.removeprefix("error: ")
            print(f"{prog}: error: {as_flags(text, flags)}", file=sys.stderr)
            return 2
        return int(stop.code or 0)
    except (ValueError, TypeError, OSError, FloatingPointError) as err:
        if os.environ.get("JAXCR_TRACEBACK"):  # JAXCR_TRACEBACK=1: the full traceback, for debugging
            raise
        text = " ".join(str(err).split()) or type(err).__name__
        print(f"{prog}: error: {as_flags(text, flags)}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
