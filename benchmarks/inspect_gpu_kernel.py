"""What the Pallas GPU kernel compiles to, without a GPU: registers, spills, instruction mix.

    pip install triton==3.9.0            # its ptxas and nvdisasm; into this or another venv
    python benchmarks/inspect_gpu_kernel.py [--triton-python PATH] [--tilings 128x8x4 128x32x4 ...]

1. In this process (jaxcr, jax): each kernel of ``jaxcr.pallas_kernel`` (the field at the three
   accuracy levels, the Jacobian, the Boris steps at float64 and float32) is lowered for CUDA and
   its Triton IR is captured (through Pallas' private lowering hook, which may move between jax
   versions) for every tiling asked for.
2. In ``--triton-python`` (an interpreter with the ``triton`` package): Triton compiles that IR
   for ``--arch`` (default sm_90a, the H100/H200), ptxas reports registers and spills, and
   nvdisasm's SASS of the field kernels' mode loop is counted by opcode: floating-point
   instructions per mode-evaluation by pipe (float64, float32, conversions, the rest).

This is the code a GPU would run only up to the Triton version: jaxlib compiles the same IR with
its own bundled Triton, so registers and counts on the card may differ somewhat. Writes
``kernels.json`` and a table; ``benchmarks/bench_gpu_kernel.py`` uses the counts for its
roofline. Measured output: ``benchmarks/measured/gpu_kernel_code_sm90.log``.
"""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

PIPES = {"float64": ("DFMA", "DMUL", "DADD", "FRND"), "float32": ("FFMA", "FMUL", "FADD"), "conversion": ("F2F",)}


def dump(args) -> list[dict]:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax._src.pallas.triton import pallas_call_registration as registration

    import jaxcr
    from jaxcr import pallas_kernel

    captured: list[str] = []
    lower = registration.lowering.lower_jaxpr_to_triton_module

    def capture(*a, **k):
        result = lower(*a, **k)
        captured.append(result.module.operation.get_asm(enable_debug_info=False))
        return result

    registration.lowering.lower_jaxpr_to_triton_module = capture
    field = jaxcr.PlaneWaveTurbulence.sample(0, jaxcr.TurbulenceParameters.paper(n_modes=256))
    modes = (field.wavevectors, field.polarisations, field.phases)
    r = jnp.zeros((122880, 3))
    kernels = []
    for text in args.tilings:
        bp, bm, warps = (int(x) for x in text.split("x"))
        tiling = pallas_kernel.Tiling(bp, bm, warps)
        cases = {
            f"field_{p}": lambda x, p=p: pallas_kernel.plane_wave_field(x, *modes, p, tiling, interpret=False)
            for p in ("float64", "fast", "float32")
        }
        cases["jacobian_float64"] = lambda x: jax.jvp(
            lambda y: pallas_kernel.plane_wave_field(y, *modes, "float64", tiling, interpret=False), (x,), (x,)
        )[1]
        for p in ("float64", "float32"):
            cases[f"boris_{p}"] = lambda x, p=p: pallas_kernel.boris_advance(
                x, x, 0.01, 10, *modes, field.regular_field, precision=p, tiling=tiling, interpret=False
            )[0]
        for name, fn in cases.items():
            captured.clear()
            jax.jit(fn).trace(r).lower(lowering_platforms=("cuda",))
            path = args.out / f"{name}_{text}.ttir"
            path.write_text(captured[-1])
            kernels.append(dict(kernel=name, tiling=text, num_warps=warps, per_thread=bp * bm // (32 * warps)))
            kernels[-1]["ttir"] = str(path)
    return kernels


def compile_and_count(out: Path, arch: str) -> None:
    """Runs in the interpreter that has ``triton``."""
    import triton
    from triton.backends.compiler import GPUTarget

    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    ptxas = next(p for p in (bin_dir / "ptxas-blackwell", bin_dir / "ptxas") if p.exists())
    kernels = json.loads((out / "kernels.json").read_text())
    version = subprocess.run([str(ptxas), "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    print(f"triton {triton.__version__}; {ptxas.name}: {version[-1]}; target {arch}", flush=True)
    target = GPUTarget("cuda", int(re.sub(r"\D", "", arch)), 32)
    for k in kernels:
        ttir = Path(k["ttir"])
        compiled = triton.compile(str(ttir), target=target, options={"num_warps": k["num_warps"], "num_stages": 1})
        ptx, cubin = ttir.with_suffix(".ptx"), ttir.with_suffix(".cubin")
        ptx.write_text(compiled.asm["ptx"])
        report = subprocess.run(
            [str(ptxas), f"-arch={arch}", "-v", str(ptx), "-o", str(cubin)], capture_output=True, text=True
        )
        k["registers"] = max(int(x) for x in re.findall(r"Used (\d+) registers", report.stderr))
        k["spill_store_bytes"] = max(int(x) for x in re.findall(r"(\d+) bytes spill stores", report.stderr))
        if k["kernel"].startswith("field_"):
            sass = subprocess.run([str(bin_dir / "nvdisasm"), "-c", str(cubin)], capture_output=True, text=True).stdout
            k["loop_instructions_per_mode_evaluation"] = _loop_mix(sass, k["per_thread"])
    (out / "kernels.json").write_text(json.dumps(kernels, indent=1))


def _loop_mix(sass: str, per_thread: int) -> dict:
    """Opcodes between the first loop label and the branch back to it, per tile element."""
    lines = sass.splitlines()
    label = next(i for i, line in enumerate(lines) if re.match(r"\.L_x_\d+:", line.strip()))
    name = lines[label].strip()[:-1]
    end = next(i for i, line in enumerate(lines) if f"BRA `({name})" in line)
    ops = [
        m.group(1)
        for line in lines[label : end + 1]
        if (m := re.search(r"\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9]*)", line))
    ]
    mix = {pipe: sum(op in names for op in ops) / per_thread for pipe, names in PIPES.items()}
    mix["other"] = len(ops) / per_thread - sum(mix.values())
    return mix


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("results/gpu_kernel_code"), help="output folder")
    ap.add_argument("--triton-python", default=sys.executable, help="a Python with the triton package")
    ap.add_argument("--arch", default="sm_90a", help="target architecture (default sm_90a: H100/H200)")
    ap.add_argument("--tilings", nargs="+", default=["128x8x4", "128x16x4", "128x32x4", "256x8x8"],
                    help="particles x modes x warps (default 128x8x4 128x16x4 128x32x4 256x8x8)")  # fmt: skip
    ap.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)  # the second phase
    args = ap.parse_args()
    if args.compile:
        compile_and_count(args.out, args.arch)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    import jax

    print(f"jax {jax.__version__}; tilings {' '.join(args.tilings)}", flush=True)
    (args.out / "kernels.json").write_text(json.dumps(dump(args), indent=1))
    cmd = [args.triton_python, __file__, "--compile", "--out", str(args.out), "--arch", args.arch]
    subprocess.run(cmd, check=True, env={**__import__("os").environ, "TRITON_DEFAULT_FP_FUSION": "1"})
    kernels = json.loads((args.out / "kernels.json").read_text())
    print(f"{'kernel':18s} {'tiling':9s} {'regs':>4s} {'spill B':>7s}  per mode-evaluation: fp64 fp32 cvt other")
    for k in kernels:
        mix = k.get("loop_instructions_per_mode_evaluation")
        counts = (
            "" if mix is None else " ".join(f"{mix[p]:4.1f}" for p in ("float64", "float32", "conversion", "other"))
        )
        print(f"{k['kernel']:18s} {k['tiling']:9s} {k['registers']:4d} {k['spill_store_bytes']:7d}  {counts}")


if __name__ == "__main__":
    main()
