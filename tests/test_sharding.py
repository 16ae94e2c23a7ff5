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
    one = jaxcr.backtrack(fields, n, [5.0, 20.0], solver=jaxcr.Boris(dt=0.05))
    four = jaxcr.backtrack(fields, n, [5.0, 20.0], solver=jaxcr.Boris(dt=0.05), devices=4)
    print("maxdiff", float(np.abs(np.asarray(one.positions) - np.asarray(four.positions)).max()))
    # Same per-device shapes: device k's 12 particles run alone on one device, bit for bit.
    same = all(np.array_equal(np.asarray(jaxcr.backtrack(fields, n[12 * k:12 * k + 12], [5.0, 20.0], solver=jaxcr.Boris(dt=0.05)).positions),
                              np.asarray(four.positions[:, :, 12 * k:12 * k + 12])) for k in range(4))
    print("bitwise", same)
    odd = jaxcr.backtrack(fields, n[:45], [5.0], solver=jaxcr.Boris(dt=0.05), devices=4)  # padded to 48
    print("padded", odd.positions.shape, float(np.abs(np.asarray(odd.positions) - np.asarray(one.positions[:, :1, :45])).max()))
""")


@pytest.mark.slow  # kept out of the default run's 6 minutes; in .ci/run's slow pass
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
        jaxcr.backtrack(
            jaxcr.PlaneWaveTurbulence.sample(0, jaxcr.TurbulenceParameters(n_modes=2)),
            jaxcr.pixel_directions(1),
            [1.0],
            devices=jax.local_device_count() + 1,
        )


MULTI = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import jaxcr
    jaxcr.distributed.initialize()  # from JAXCR_COORDINATOR / JAXCR_NUM_PROCESSES / JAXCR_PROCESS_ID
    assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
    p = jaxcr.TurbulenceParameters(lambda_min=1.0, lambda_max=100.0, n_modes=16)
    fields = jaxcr.PlaneWaveTurbulence.sample_ensemble(0, p, 2)
    n = jaxcr.pixel_directions(2)  # 48 particles: 12 per device over 2 processes x 2 devices
    four = jaxcr.backtrack(fields, n, [5.0, 20.0], solver=jaxcr.Boris(dt=0.05), devices="all")
    same = all(np.array_equal(np.asarray(jaxcr.backtrack(fields, n[12 * k:12 * k + 12], [5.0, 20.0], solver=jaxcr.Boris(dt=0.05)).positions),
                              np.asarray(four.positions[:, :, 12 * k:12 * k + 12])) for k in range(4))
    cfg = jaxcr.EnsembleConfig(turbulence=dict(lambda_min=1.0, lambda_max=100.0, n_modes=8), nside=2, n_realisations=2,
                               times=(2.0, 4.0), solver=jaxcr.Boris(dt=0.05))
    out = sys.argv[1] + f"/run{jax.process_index()}.nc"
    ds = jaxcr.run_ensemble(cfg, output=out, progress=False, devices="all")
    print(jax.process_index(), "bitwise", same, "cl", repr(float(ds.cl_mean.values.sum())), "wrote", os.path.exists(out))
""")


@pytest.mark.slow
def test_two_processes_with_jax_distributed_match_single_process(tmp_path):
    # Two processes on this machine, 2 forced CPU devices each, connected by
    # jaxcr.distributed.initialize (gloo): backtracking sharded over all 4 devices must equal
    # the single-process results bit for bit (12 particles per device), both processes must
    # get the same run_ensemble statistics, and only process 0 writes the output file.
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for pid in range(2):
        env = dict(
            os.environ, JAXCR_COORDINATOR=f"127.0.0.1:{port}", JAXCR_NUM_PROCESSES="2", JAXCR_PROCESS_ID=str(pid)
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", MULTI, str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    lines = [o.strip().splitlines()[-1].split() for o, _ in outs]
    assert [line[0] for line in lines] == ["0", "1"]
    assert all(line[2] == "True" for line in lines)
    assert lines[0][4] == lines[1][4]  # same statistics on both processes
    assert lines[0][6] == "True" and lines[1][6] == "False"  # only process 0 writes
