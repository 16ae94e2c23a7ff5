"""Particles sharded over 4 forced CPU devices give the single-device results."""

import subprocess
import sys
import textwrap

import jax
import pytest

import jaxcr

CHILD = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import jaxcr
    assert jax.local_device_count() == 4
    p = jaxcr.TurbulenceParameters(lambda_min=1.0, lambda_max=100.0, n_modes=16)
    fields = jaxcr.PlaneWaveTurbulence.sample_ensemble(0, p, 2)
    n = jaxcr.pixel_directions(2)  # 48 particles: 12 per device
    one = jaxcr.backtrack(fields, n, [5.0, 20.0], dt=0.05)
    four = jaxcr.backtrack(fields, n, [5.0, 20.0], dt=0.05, devices=4)
    print("maxdiff", float(np.abs(np.asarray(one.positions) - np.asarray(four.positions)).max()))
    # Same per-device shapes: device k's 12 particles run alone on one device, bit for bit.
    same = all(np.array_equal(np.asarray(jaxcr.backtrack(fields, n[12 * k:12 * k + 12], [5.0, 20.0], dt=0.05).positions),
                              np.asarray(four.positions[:, :, 12 * k:12 * k + 12])) for k in range(4))
    print("bitwise", same)
    odd = jaxcr.backtrack(fields, n[:45], [5.0], dt=0.05, devices=4)  # padded to 48
    print("padded", odd.positions.shape, float(np.abs(np.asarray(odd.positions) - np.asarray(one.positions[:, :1, :45])).max()))
""")


def test_sharded_backtracking_equals_single_device_on_4_cpu_devices():
    # Different per-device batch sizes may change floating-point rounding (≤ 1e-12 at ΩT = 20,
    # where chaos amplifies it by e^{λT} ≈ 20); equal per-device shapes must agree bit for bit.
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert float(lines["maxdiff"]) < 1e-10
    assert lines["bitwise"] == "True"
    shape, diff = lines["padded"].rsplit(" ", 1)
    assert shape == "(2, 1, 45, 3)" and float(diff) < 1e-10


def test_asking_for_more_devices_than_exist_is_an_error():
    with pytest.raises(ValueError, match="devices"):
        jaxcr.backtrack(jaxcr.PlaneWaveTurbulence.sample(0, jaxcr.TurbulenceParameters(n_modes=2)),
                        jaxcr.pixel_directions(1), [1.0], devices=jax.local_device_count() + 1)
