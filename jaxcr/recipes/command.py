"""How every jaxcr command behaves: one-line errors that name the flag, resumable interrupts.

* :class:`CommandParser`: argparse whose errors are one line, ``PROG: error: MESSAGE (see PROG
  --help)``, exit status 2.
* :func:`run_command`: runs a command's ``main``; a bad value found after parsing (a
  ``ValueError``/``TypeError`` from the library, a refused file) is one line on stderr naming the
  flag (``ell_max`` becomes ``--ell-max``), exit status 2; Ctrl-C or SIGTERM print what to do
  ("rerun the same command to resume": runs checkpoint as they go) and exit 130 or 143.
  ``JAXCR_TRACEBACK=1`` shows the full traceback of an error instead. Commands keep JAX's
  compiled programs in a persistent cache (:func:`use_compilation_cache`), so a rerun of the same
  command does not compile again.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Callable

__all__ = ["CommandParser", "run_command", "as_flags", "FLAGS", "use_compilation_cache"]

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
        if kwargs.get("description"):  # module docstrings: reST roles and literals read as plain text
            kwargs["description"] = plain_text(kwargs["description"])
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def plain_text(doc: str) -> str:
    """A docstring for a terminal: ``:func:`~jaxcr.x.y``` becomes ``y``, ``:mod:`jaxcr.x``` becomes
    ``jaxcr.x`` and double backquotes become single ones."""
    doc = re.sub(r":(?:py:)?[a-z]+:`~[\w.]*?(\w+)(\(\))?`", r"\1\2", doc)
    doc = re.sub(r":(?:py:)?[a-z]+:`([^`]+)`", r"\1", doc)
    return doc.replace("``", "`")


class Interrupted(BaseException):
    """SIGTERM, turned into an exception so that the run stops where Ctrl-C would stop it (a
    BaseException, like KeyboardInterrupt, so that no `except Exception` turns it into an error)."""


def _on_sigterm(signum, frame):
    raise Interrupted


def _redeliver_swallowed(previous_hook):
    """A ``sys.unraisablehook`` that re-delivers an interrupt Python swallowed: a signal that arrives
    while a finaliser or a garbage-collector callback runs (JAX's ``_xla_gc_callback``) raises there,
    where Python only prints "Exception ignored in" and carries on, so the run would ignore the
    signal. The signal is raised again in the main thread (``_thread.interrupt_main``), where the
    run stops at its next step. A helper thread raises it 10 ms later: raised from the hook itself, it
    would be handled inside the finaliser again (if the later one is swallowed too, it comes back here)."""
    import _thread
    import threading

    def hook(unraisable):
        signum = {Interrupted: signal.SIGTERM, KeyboardInterrupt: signal.SIGINT}.get(unraisable.exc_type)
        if signum is None:
            previous_hook(unraisable)
            return
        threading.Timer(0.01, _thread.interrupt_main, args=(signum,)).start()

    return hook


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


MIN_COMPILE_TIME_S = 0.0  # every program: a fit compiles dozens of small ones (under 0.05 s each, 1.8 s together)


def use_compilation_cache() -> str | None:
    """Switch on JAX's persistent compilation cache for this process; returns its folder.

    The folder is ``$JAXCR_COMPILATION_CACHE`` if set (``off`` switches the cache off), else
    ``$XDG_CACHE_HOME/jaxcr/xla`` (``~/.cache/jaxcr/xla``). Programs that took over
    ``MIN_COMPILE_TIME_S`` to compile are stored there and loaded by the next process that compiles the same program on the
    same machine and versions (JAX keys them by the program, the compiler and the device). Set
    before JAX is imported where possible (an environment variable JAX reads at import), so that
    ``--help`` still does not import it.
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):  # the user's own choice, for JAX itself
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    chosen = os.environ.get("JAXCR_COMPILATION_CACHE", "")
    if chosen.lower() in ("off", "0", "false", "no"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = chosen or os.path.join(base, "jaxcr", "xla")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None  # a read-only home: run without the cache
    if "jax" in sys.modules:
        sys.modules["jax"].config.update("jax_compilation_cache_dir", folder)
        sys.modules["jax"].config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    else:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", str(MIN_COMPILE_TIME_S))
    return folder


def run_command(prog: str, main: Callable[[], int], flags: dict[str, str] | None = None) -> int:
    """Run ``main()`` as the command ``prog`` (module docstring); returns the exit status."""
    use_compilation_cache()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    # Ctrl-C raises KeyboardInterrupt while the command runs, whatever handler a library left
    # (with SIG_IGN or SIG_DFL it would be ignored or kill the run without the resume line, and a
    # swallowed one could not be re-delivered: _thread.interrupt_main does nothing then)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler) if _main_thread() else None
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _redeliver_swallowed(previous_hook)
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
        sys.unraisablehook = previous_hook
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
