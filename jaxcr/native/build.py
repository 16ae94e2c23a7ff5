"""Building and loading the native CPU kernel (the C++ sources beside this file).

The kernel is compiled on first use with the platform's C++ compiler (``$CXX``, else ``g++``,
else ``c++``) against the XLA FFI headers that ship with the installed jaxlib, and cached in
``$JAXCR_NATIVE_CACHE`` (default ``$XDG_CACHE_HOME/jaxcr`` or ``~/.cache/jaxcr``) under a name
that hashes the sources, the compiler, jaxlib and the machine type, so a change of any of them
builds anew. The vectorised sums are compiled once per instruction set (on x86-64: baseline SSE2,
x86-64-v3 = AVX2/FMA and x86-64-v4 = AVX-512, 512-bit vectors) and the library picks at load
time the best one the running CPU supports, so a cache shared by different machines never runs
an instruction the CPU lacks. The build takes about 10-20 s, once.

``JAXCR_NATIVE=0`` (or ``false``, ``no``, ``off``) switches the native kernel off (the pure-JAX mode sum
is used; other values than these and 1/true/yes/on are refused);
``JAXCR_NATIVE_VARIANT`` forces an instruction-set variant (``generic``, ``x86-64-v3``,
``x86-64-v4``). ``jaxcr native [--rebuild]`` builds it, says where it is and which variant runs.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

__all__ = ["SOURCES", "library_path", "build_library", "load_library", "NativeUnavailable"]

SOURCES = ("plane_waves_kernels.h", "plane_waves_kernels.cc", "plane_waves_ffi.cc")
_HERE = Path(__file__).resolve().parent
_COMMON_FLAGS = ["-O3", "-std=c++17", "-fPIC", "-fopenmp-simd", "-fno-math-errno"]
# (symbol suffix, compiler flags); on other machine types only the first, with the default target
_X86_VARIANTS = (
    ("generic", ["-march=x86-64", "-mtune=generic"]),
    ("x86_64_v3", ["-march=x86-64-v3", "-mtune=generic"]),
    ("x86_64_v4", ["-march=x86-64-v4", "-mprefer-vector-width=512", "-mtune=generic"]),
)

_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL] = {}


class NativeUnavailable(RuntimeError):
    """The native kernel cannot be built or loaded here (the message says why and what to do)."""


def _compiler() -> str:
    for candidate in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if candidate and shutil.which(candidate):
            return candidate
    raise NativeUnavailable("no C++ compiler found (set CXX, or install g++: e.g. `apt install g++`)")


def _variants() -> tuple[tuple[str, list[str]], ...]:
    if platform.machine().lower() in ("x86_64", "amd64"):
        return _X86_VARIANTS
    return (("generic", []),)


def _include_dir() -> str:
    import jax

    return jax.ffi.include_dir()


def _cache_dir() -> Path:
    if os.environ.get("JAXCR_NATIVE_CACHE"):
        return Path(os.environ["JAXCR_NATIVE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxcr"


_OFF, _ON = ("0", "false", "no", "off"), ("", "1", "true", "yes", "on")


def switched_off() -> bool:
    """Whether ``JAXCR_NATIVE`` switches the native kernel off (a ``ValueError`` for a value that is
    neither on nor off, instead of ignoring it)."""
    value = os.environ.get("JAXCR_NATIVE", "1").strip().lower()
    if value not in _OFF + _ON:
        raise ValueError(
            f"JAXCR_NATIVE={os.environ['JAXCR_NATIVE']!r} is neither on ({', '.join(_ON[1:])}) nor off ({', '.join(_OFF)})"
        )
    return value in _OFF


def library_path() -> Path:
    """Where the library for these sources, compiler, jaxlib and machine type is cached."""
    import jaxlib

    compiler = _compiler()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((_HERE / name).read_bytes())
    h.update(repr((version, jaxlib.__version__, platform.machine(), _variants(), _COMMON_FLAGS)).encode())
    return _cache_dir() / f"libjaxcr_native-{h.hexdigest()[:16]}.so"


def build_library(verbose: bool = False) -> Path:
    """Compile the kernel into the cache (atomically: a temporary file renamed into place)."""
    compiler, include = _compiler(), _include_dir()
    target = library_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        commands = [
            [compiler, *_COMMON_FLAGS, *flags, f"-DJAXCR_VARIANT={name}", "-c", str(_HERE / "plane_waves_kernels.cc"),
             "-o", os.path.join(tmp, f"kernels_{name}.o")]
            for name, flags in _variants()
        ]  # fmt: skip
        commands.append(
            [compiler, *_COMMON_FLAGS, "-I", include, "-c", str(_HERE / "plane_waves_ffi.cc"),
             "-o", os.path.join(tmp, "ffi.o")]
        )  # fmt: skip
        procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in commands]
        for command, proc in zip(commands, procs):
            out = proc.communicate()[0]
            if proc.returncode != 0:
                raise NativeUnavailable(f"compiling the native kernel failed: {' '.join(command)}\n{out}")
            if verbose and out:
                print(out, file=sys.stderr)
        objects = sorted(str(p) for p in Path(tmp).glob("*.o"))
        tmp_lib = os.path.join(tmp, target.name)
        link = subprocess.run([compiler, "-shared", "-o", tmp_lib, *objects], capture_output=True, text=True)
        if link.returncode != 0:
            raise NativeUnavailable(f"linking the native kernel failed:\n{link.stdout}{link.stderr}")
        os.chmod(tmp_lib, 0o755)
        os.replace(tmp_lib, target)
    return target


def load_library() -> ctypes.CDLL:
    """The loaded kernel library (built first if needed), its FFI targets registered with JAX.

    Raises :class:`NativeUnavailable` with the reason when it cannot be built or loaded.
    """
    import jax

    with _lock:
        if "lib" in _loaded:
            return _loaded["lib"]
        if switched_off():
            raise NativeUnavailable(f"switched off by JAXCR_NATIVE={os.environ['JAXCR_NATIVE']}")
        path = library_path()
        if not path.exists():
            try:
                build_library()
            except OSError as err:
                raise NativeUnavailable(
                    f"building the kernel into {path.parent} failed: {err}; set JAXCR_NATIVE_CACHE to a writable folder"
                ) from err
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as err:
            raise NativeUnavailable(f"loading {path} failed: {err}; delete it to rebuild") from err
        lib.jaxcr_native_variant.restype = ctypes.c_char_p
        lib.jaxcr_native_set_variant.argtypes = [ctypes.c_char_p]
        forced = os.environ.get("JAXCR_NATIVE_VARIANT")
        if forced and lib.jaxcr_native_set_variant(forced.encode()) != 0:
            raise NativeUnavailable(f"JAXCR_NATIVE_VARIANT={forced!r} is unknown or not supported by this CPU")
        for name in ("jaxcr_plane_wave_field", "jaxcr_plane_wave_jacobian", "jaxcr_boris"):
            jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
        _loaded["lib"] = lib
        return lib
