"""The experiment scripts run end to end (tiny settings) and write their figure, data and parameters."""

import json
import subprocess
import sys
from pathlib import Path

import jaxcr

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--nside", "2", "--realisations", "2", "--modes", "8", "--dt", "0.05", "--t-min", "0.5", "--t-max", "5",
        "--n-times", "3", "--no-progress"]


def _run(script, out, *extra):
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / script), *TINY, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_fig2_script_writes_png_data_and_parameters(tmp_path):
    stdout = _run("fig2.py", tmp_path)
    for name in ("fig2.png", "fig2.nc", "params.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    ds = jaxcr.io.load_dataset(tmp_path / "fig2.nc")
    assert ds.sizes["time"] == 3 and list(ds.gradient.values) == ["parallel", "perpendicular"]
    assert json.loads((tmp_path / "params.json").read_text())["config"]["nside"] == 2
    assert "Eq.8" in stdout
    # Running again resumes from the finished checkpoint and reproduces the same data.
    _run("fig2.py", tmp_path)
    again = jaxcr.io.load_dataset(tmp_path / "fig2.nc")
    assert (again.cl.values == ds.cl.values).all()


def test_gedanken_script_writes_png_ratios_and_data(tmp_path):
    _run("gedanken.py", tmp_path)
    for name in ("gedanken.png", "gedanken_b0_0.nc", "gedanken_b0_1.nc", "ratios.json", "params.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    ratios = json.loads((tmp_path / "ratios.json").read_text())
    assert set(ratios) == {"B0 = 0 (pure turbulence)", "B0 = 1, σ² = 1"}


def test_scripts_explain_presets_in_help():
    for script in ("fig2.py", "gedanken.py"):
        out = subprocess.run([sys.executable, str(ROOT / "experiments" / script), "--help"], capture_output=True,
                             text=True, timeout=120).stdout
        assert "quick" in out and "paper" in out
