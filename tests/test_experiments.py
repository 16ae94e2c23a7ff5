"""The experiment scripts run end to end (tiny settings) and write their figure, data and parameters."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxcr

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--nside",
    "2",
    "--realisations",
    "2",
    "--modes",
    "8",
    "--dt",
    "0.05",
    "--t-min",
    "0.5",
    "--t-max",
    "5",
    "--n-times",
    "3",
    "--no-progress",
]


def _script(name, *args, timeout=600, cwd=None):
    """Run experiments/<name> with ``args`` in a fresh process; the completed process."""
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def _run(script, out, *extra):
    proc = _script(script, *TINY, "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow  # kept out of the default run's 6 minutes; in .ci/run's slow pass
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


@pytest.mark.slow
def test_gedanken_script_writes_png_ratios_and_data(tmp_path):
    _run("gedanken.py", tmp_path)
    for name in ("gedanken.png", "gedanken_b0_0.nc", "gedanken_b0_1.nc", "ratios.json", "params.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    ratios = json.loads((tmp_path / "ratios.json").read_text())
    assert set(ratios) == {"B0 = 0 (pure turbulence)", "B0 = 1, σ² = 1"}


@pytest.mark.slow
def test_scripts_explain_presets_in_help():
    for script in ("fig2.py", "gedanken.py", "sky_maps.py"):
        out = _script(script, "--help", timeout=120).stdout
        assert "quick" in out and "paper" in out


@pytest.mark.slow
def test_mock_observatory_script_writes_figure_and_agreement(tmp_path):
    # nside 4, ΩT = 5, 4 mock skies per observatory: the script runs end to end and the mean
    # recovered spectrum agrees with the forward model (every |pull| < 5 at this small size).
    proc = _script("mock_observatory.py", "--nside", "4", "--time", "5", "--skies", "4", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads((tmp_path / "mock_observatory.json").read_text())
    assert set(rec["observatories"]) == {"icecube", "hawc"}
    for obs in rec["observatories"].values():
        assert obs["max_abs_pull"] < 5, obs["pull"]
    assert (tmp_path / "mock_observatory.png").stat().st_size > 0


@pytest.mark.slow
def test_fig2_runs_with_other_options_get_their_own_folder_and_fresh_reruns(tmp_path):
    # From a scratch working directory, without --out: the follow-up run with another --t-max
    # writes into its own folder and leaves the first untouched; giving the first folder to
    # another configuration is refused before anything is written; --fresh runs again.
    def run(*extra):
        return _script("fig2.py", *TINY, *extra, cwd=tmp_path)

    first = run()
    assert first.returncode == 0, first.stderr[-2000:]
    (folder,) = (tmp_path / "results").iterdir()
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    second = run("--t-max", "6")
    assert second.returncode == 0, second.stderr[-2000:]
    folders = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert len(folders) == 2 and any("t-max6" in f for f in folders), folders
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # the first run's folder is untouched
    clash = run("--t-max", "7", "--out", str(folder))
    assert clash.returncode != 0 and "another configuration" in clash.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    again = run("--out", str(folder))
    assert again.returncode == 0 and "resuming" in again.stdout
    fresh = run("--out", str(folder), "--fresh")
    assert fresh.returncode == 0 and "resuming" not in fresh.stdout
    np.testing.assert_array_equal(
        jaxcr.io.load_dataset(folder / "fig2.nc").cl.values,
        jaxcr.io.load_dataset(tmp_path / "results" / folder.name / "fig2.nc").cl.values,
    )


@pytest.mark.slow
def test_sky_maps_script_writes_maps_figure_and_parameters(tmp_path):
    proc = _script(
        "sky_maps.py", "--nside", "4", "--modes", "8", "--t-min", "1", "--t-max", "10", "--n-times", "2", "--out",
        str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("sky_maps.png", "sky_maps.nc", "params.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    ds = jaxcr.io.load_dataset(tmp_path / "sky_maps.nc")
    assert ds.sky_map.shape == (2, 1, 2, 192) and ds.sky_map.attrs["units"] == "1"
    assert json.loads((tmp_path / "params.json").read_text())["nside"] == 4


@pytest.mark.slow
def test_jaxcr_command_runs_the_recipes_the_scripts_run(tmp_path):
    # `jaxcr sky-maps` and `python experiments/sky_maps.py` are one recipe (jaxcr.recipes.sky_maps):
    # the command writes the same files, and every recipe lists its presets in --help.
    args = ["--nside", "4", "--modes", "8", "--t-min", "1", "--t-max", "10", "--n-times", "2", "--no-progress"]
    proc = subprocess.run(
        [sys.executable, "-m", "jaxcr.cli", "sky-maps", *args, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ds = jaxcr.io.load_dataset(tmp_path / "sky_maps.nc")
    assert ds.sky_map.shape == (2, 1, 2, 192)
    for recipe in ("fig2", "gedanken", "sky-maps"):
        out = subprocess.run(
            [sys.executable, "-m", "jaxcr.cli", recipe, "--help"], capture_output=True, text=True, timeout=120
        ).stdout
        assert f"jaxcr {recipe}" in out and "quick" in out and "paper" in out, recipe


def test_every_script_and_command_option_has_a_help_text():
    # Every add_argument call of the experiment scripts, the recipes and the jaxcr command carries
    # help=... (read from the source, so a new option without one fails here).
    import ast

    files = [*sorted((ROOT / "experiments").glob("*.py")), *sorted((ROOT / "jaxcr" / "recipes").glob("*.py"))]
    files.append(ROOT / "jaxcr" / "cli.py")
    missing = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                if not any(k.arg == "help" for k in node.keywords):
                    missing.append(f"{path.name}:{node.lineno}")
    assert not missing, missing


@pytest.mark.slow
def test_anchors_and_pair_model_scripts_run_end_to_end(tmp_path):
    """experiments/anchors.py on 6 tiny points, then experiments/pair_model.py on its output: both
    write their JSON and figure; the gradient's amplitude only normalises C_ℓ (C(3g)/C(g) = 9 to
    1e-12, δI being linear in g); every usable point gets a left-out comparison; a rerun of anchors
    reuses its point files and reproduces anchors.json's numbers."""
    out, model_out = tmp_path / "a", tmp_path / "m"
    args = ["--sigma2", "1", "3", "--rho", "0.1", "0.2", "0.3", "--nside", "8", "--realisations", "8",
            "--modes", "16", "--factor", "0.3", "--ell-max", "10", "--out", str(out)]  # fmt: skip
    proc = _script("anchors.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = json.loads((out / "anchors.json").read_text())
    assert len(first["rows"]) == 6 and (out / "anchors.png").stat().st_size > 0
    for row in first["rows"]:
        for name in ("parallel", "perpendicular"):
            assert row[name]["amplitude_ratio_max_deviation"] < 1e-12
    proc = _script("anchors.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((out / "anchors.json").read_text())
    assert [r["perpendicular"]["mean"] for r in again["rows"]] == [r["perpendicular"]["mean"] for r in first["rows"]]
    law_out = tmp_path / "law.json"  # not the shipped law
    proc = _script("pair_model.py", "--anchors", str(out / "anchors.json"), "--ell-max", "10", "--out", str(model_out),
                   "--law-out", str(law_out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((model_out / "pair_model.json").read_text())
    assert len(result["law"]["pair_time"]) == 3 and result["points"]
    assert all("left_out" in p for p in result["points"]) and (model_out / "pair_model.png").stat().st_size > 0
    assert json.loads(law_out.read_text())["law"] == result["law"]


@pytest.mark.slow
def test_pair_model_extrapolation_script_predicts_held_out_points(tmp_path):
    """experiments/pair_model_extrapolation.py on a tiny finished campaign (3 × 3 points, nside 4):
    it trains on ρ ≥ 0.1, predicts the three ρ = 0.05 points with both pair-model transfers, and
    writes finite differences, z-scores and the figure."""
    folder = tmp_path / "tiny"
    create = ["campaign", "create", str(folder), "--sigma2", "1", "3", "--rho", "0.05", "0.3", "--points", "3",
              "--nside", "4", "--realisations", "6", "--separation-times", "0.5", "1", "--modes", "16",
              "--field-precision", "fast", "--observatory", "icecube"]  # fmt: skip
    for args in (create, ["campaign", "run", str(folder), "--quiet"]):
        proc = subprocess.run([sys.executable, "-m", "jaxcr.cli", *args], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _script("pair_model_extrapolation.py", "--campaign", str(folder), "--train-rho-min", "0.1",
                   "--out", str(tmp_path / "out"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "extrapolation.json").read_text())
    points = result["analyses"]["icecube"]["points"]
    assert [p["rho"] for p in points] == pytest.approx([0.05] * 3)
    for p in points:
        for variant in ("pair, transfer 0", "pair, transfer 1"):
            assert np.all(np.isfinite(p[variant]["diff"])) and np.all(np.isfinite(p[variant]["z"]))
    assert (tmp_path / "out" / "extrapolation.png").stat().st_size > 0


@pytest.mark.slow
def test_resonant_modes_script_compares_the_mode_ranges(tmp_path):
    """experiments/resonant_modes.py at tiny settings (nside 4, 6 realisations, ρ = 0.2, two short
    times): both campaigns run, and per analysis and σ² it writes finite log-ratios with positive
    errors, p-values in (0, 1] and a rise to the last time that is exactly 0 there; a rerun
    resumes the finished campaigns and gives the same numbers."""
    args = ("--rho", "0.2", "--sigma2", "1", "3", "--nside", "4", "--realisations", "6",
            "--separation-times", "0.05", "0.1", "--out", str(tmp_path / "out"))  # fmt: skip
    proc = _script("resonant_modes.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "resonant_modes.json").read_text())
    assert {r["analysis"] for r in result["rows"]} == {"icecube", "hawc"} and len(result["rows"]) == 4
    for row in (r for r in result["rows"] if r["ells"]):
        assert np.all(np.isfinite(row["ln_ratio_resonant_over_default"])) and np.all(np.array(row["ln_ratio_se"]) > 0)
        for r in row["ranges"].values():
            assert np.all(np.array(r["log_mean_minus_last"])[-1] == 0)
            assert all(0 < p <= 1 for p in r["p_change_vs_last"])
    assert any(r["ells"] for r in result["rows"])
    assert (tmp_path / "out" / "resonant_modes.png").stat().st_size > 0
    assert _script("resonant_modes.py", *args).returncode == 0
    again = json.loads((tmp_path / "out" / "resonant_modes.json").read_text())
    assert again["rows"] == result["rows"]


@pytest.mark.slow
def test_infinite_time_script_predicts_later_times(tmp_path):
    """experiments/infinite_time.py on a tiny convergence_time.py run (nside 4, σ² = 1, ρ = 0.2,
    six times to 4.9 t_sep): it fits 0.3-2.5 t_sep, predicts the last time with finite
    differences and positive errors, and says what it needs when the times do not allow a fit."""
    run = tmp_path / "run"
    proc = _script("convergence_time.py", "--sigma2", "1", "--rho", "0.2", "--nside", "4", "--realisations", "8",
                   "--t-min", "5", "--t-max", "400", "--n-times", "6", "--ell-max", "3", "--out", str(run))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _script("infinite_time.py", "--runs", str(run), "--fit-min", "0.3", "--fit-max", "2.5",
                   "--out", str(tmp_path / "out"))  # fmt: skip
    if "the pixel noise hides every ℓ" in proc.stdout:
        pytest.skip("the tiny run resolves no multipole")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (point,) = json.loads((tmp_path / "out" / "infinite_time.json").read_text())["points"]
    v = point["validation"]
    assert v["predicted_times_over_tsep"] == pytest.approx([400 / (13.9 * 0.2**-1.1)], rel=1e-6)
    assert np.all(np.isfinite(v["delta"])) and np.all(np.array(v["delta_se"]) > 0)
    proc = _script(
        "infinite_time.py", "--runs", str(run), "--fit-min", "3", "--fit-max", "4", "--out", str(tmp_path / "o2")
    )
    assert proc.returncode != 0 and "need >= 3 and >= 1" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_point_scatter_script_recovers_what_a_new_artifact_records(tmp_path):
    """experiments/point_scatter.py on a 4-point campaign (nside 4, 4 realisations, 6 at point 1) and
    its artifact with the per-point record removed (as in artifacts built before it existed): the
    emulator refit from the campaign, weighted by each point's N_B, equals the artifact's
    (round-off), each point's mean is listed against it with its N_B, and --record writes the same ratios the
    artifact's build recorded (1e-12), under the same version; an artifact of other moments (the
    pixel noise kept in the scatter) is refused."""
    import dataclasses

    from jaxcr.analysis import Analysis
    from jaxcr.inference import campaign as cp
    from jaxcr.inference import scheduling as sc
    from jaxcr.inference.artifact import EmulatorArtifact
    from jaxcr.inference.artifact_build import build_artifact
    from jaxcr.spectrum_model import SpectrumModel
    from jaxcr.turbulence_model import PlaneWaveGJ99

    model = SpectrumModel(nside=4, n_realisations=4, turbulence=PlaneWaveGJ99(n_modes=8))
    box = jaxcr.plane_wave_parametrisation((0.5, 2.0), (0.05, 0.2))
    campaign = cp.Campaign.create(
        tmp_path / "c", cp.CampaignSpec.on_grid(model, (1.0, 2.0), (Analysis("full"),), box, 2)
    )
    sc.run_campaign(campaign, progress=False)
    campaign.add_realisations([1], 6)
    sc.run_campaign(campaign, progress=False)
    built = build_artifact(campaign, "full", ells=np.arange(1, 3), degree=1, time=1.0)
    older = {k: v for k, v in built.provenance.items() if k != "point_scatter"}
    dataclasses.replace(built, provenance=older).save(tmp_path / "older.npz")
    proc = _script("point_scatter.py", "--campaign", str(tmp_path / "c"), "--artifact", str(tmp_path / "older.npz"),
                   "--record", str(tmp_path / "recorded.npz"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    difference = float(proc.stdout.split("largest difference ")[1].split()[0])
    assert difference < 1e-10, proc.stdout
    assert "held out, local: " in proc.stdout and "SD of the ln ratio" in proc.stdout
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("   ") and "σ² =" in line]
    assert [row[-1] for row in rows] == ["4", "6", "4", "4"] and all("…" in row for row in rows), proc.stdout
    recorded = EmulatorArtifact.load(tmp_path / "recorded.npz")
    assert recorded.version == built.version
    ratio = recorded.provenance["point_scatter"]["ratio"]
    assert ratio == pytest.approx(built.provenance["point_scatter"]["ratio"], rel=1e-12)
    other = build_artifact(campaign, "full", ells=np.arange(1, 3), degree=1, time=1.0, pixel_noise_scatter="kept")
    other.save(tmp_path / "other.npz")
    proc = _script("point_scatter.py", "--campaign", str(tmp_path / "c"), "--artifact", str(tmp_path / "other.npz"),
                   "--record", str(tmp_path / "x.npz"))  # fmt: skip
    assert proc.returncode != 0 and "was not built from the deconvolved moments" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_realisations_as_skies_script_fits_a_design_points_own_realisations(tmp_path):
    """experiments/realisations_as_skies.py on a 4-point campaign (nside 8, 6 realisations, the artifact at ΩT = 2): every
    realisation is fitted or refused (c_r ≤ 0), each λ equals −2 ln L at the point less −2 ln L at
    the saved estimate on a sky rebuilt from the campaign (c_r, its pixel-noise σ_ℓ; 1e-9 relative)
    and is ≥ 0, the coverage is the share of saved intervals that hold the point, and a value off
    the design (with the design's list) and a --skies-from folder without skies are refused."""
    import jax.numpy as jnp

    from jaxcr.analysis import Analysis, white_noise_variance
    from jaxcr.inference import campaign as cp
    from jaxcr.inference import scheduling as sc
    from jaxcr.inference.artifact_build import build_artifact
    from jaxcr.inference.sky_fit import sky_likelihood
    from jaxcr.observations import ObservedSpectrum
    from jaxcr.spectrum_model import SpectrumModel
    from jaxcr.turbulence_model import PlaneWaveGJ99

    model = SpectrumModel(nside=8, n_realisations=6, turbulence=PlaneWaveGJ99(n_modes=8))
    box = jaxcr.plane_wave_parametrisation((0.5, 2.0), (0.05, 0.2))
    campaign = cp.Campaign.create(
        tmp_path / "c", cp.CampaignSpec.on_grid(model, (1.0, 2.0), (Analysis("full"),), box, 2)
    )
    sc.run_campaign(campaign, progress=False)
    artifact = build_artifact(campaign, "full", ells=np.arange(1, 4), degree=1, time=2.0)
    artifact.save(tmp_path / "a.npz")
    proc = _script("realisations_as_skies.py", "--campaign", str(tmp_path / "c"), "--artifact",
                   str(tmp_path / "a.npz"), "--point", "2", "0.2", "--out", str(tmp_path / "o"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "o" / "realisations.json").read_text())
    k, row = report["design_point"], report["sets"]["realisations"]
    assert campaign.spec.values(k) == pytest.approx({"sigma2": 2.0, "rho": 0.2})
    assert row["fits"] + row["refused"] == 6 and row["fits"] >= 2, row
    arrays, _ = campaign.load_point(k)
    t_ell, v_ell = artifact.analysis.noise_response(8)
    noise = arrays["pixel_noise"][:, 1, None]
    c = (arrays["cl_full"][:, 1] - noise * t_ell)[:, 1:4]
    sigma = np.sqrt(np.maximum(white_noise_variance(c, noise, t_ell[1:4], v_ell[1:4]), (1e-3 * c) ** 2))
    kept = [r for r in range(6) if np.all(c[r] > 0)]
    assert len(kept) == row["fits"]
    truth = report["truth"]
    for r, lam, estimate in zip(kept, row["lam"], row["estimates"]):
        sky = ObservedSpectrum(ell=np.arange(1, 4), cl=c[r], sigma=sigma[r], observatory="full", energy_tev=10.0,
                               noise_level=0.0, analysis=artifact.analysis, nside=8)  # fmt: skip
        like = sky_likelihood(sky, artifact, amplitude=1.0)
        at = [float(like.terms(jnp.asarray(artifact.parameters.coordinates(v)))[0]) for v in (truth, estimate)]
        assert lam == pytest.approx(at[0] - at[1], rel=1e-9, abs=1e-9 * abs(at[0]))
        assert lam >= -1e-6  # the fit's maximum is at least as high as the truth's
    lo_hi = [(i["sigma2"]["68"][0], i["sigma2"]["68"][1]) for i in row["intervals"]]
    share = np.mean([lo * (1 - 1e-9) <= truth["sigma2"] <= hi * (1 + 1e-9) for lo, hi in lo_hi])
    assert row["summary"]["sigma2"]["coverage_68"] == pytest.approx(share)
    proc = _script("realisations_as_skies.py", "--campaign", str(tmp_path / "c"), "--artifact",
                   str(tmp_path / "a.npz"), "--point", "1", "0.1", "--out", str(tmp_path / "o"))  # fmt: skip
    assert proc.returncode != 0 and "is not a design point" in proc.stderr and "#3 (sigma2 = 2" in proc.stderr
    proc = _script("realisations_as_skies.py", "--campaign", str(tmp_path / "c"), "--artifact", str(tmp_path / "a.npz"),
                   "--point", "2", "0.2", "--skies-from", str(tmp_path), "--out", str(tmp_path / "o"))  # fmt: skip
    assert proc.returncode != 0 and "holds no coverage.json" in proc.stderr


@pytest.mark.slow
def test_campaign_fields_script_puts_both_paths_of_each_field_together(tmp_path):
    """experiments/campaign_fields.py at a design point of the shipped IceCube-like artifact, nside 8:
    per field the observed sky and the campaign's path agree (median |⟨ln ratio⟩| < 0.1: at nside 8
    and a = 5e-9 the shot noise is a few % of the faintest C_ℓ), the campaign set is the point's
    N_B realisations of stream 1 + k, and a value off the design is refused with the list."""
    out = tmp_path / "f"
    proc = _script("campaign_fields.py", "--artifact", "icecube", "--point", "3", "0.2", "--nside", "8",
                   "--fresh", "3", "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "fields.json").read_text())
    assert report["design_index"] == 15 and report["sets"]["campaign"]["stream"] == 16
    assert report["sets"]["campaign"]["fields"] == 32 and report["sets"]["fresh"]["fields"] == 3
    for row in report["sets"].values():
        assert np.median(np.abs(row["paired_log_ratio"])) < 0.1 and len(row["offset"]) == 14
    assert (out / "fields.png").stat().st_size > 0
    proc = _script("campaign_fields.py", "--artifact", "icecube", "--point", "1", "0.1", "--out", str(out))
    assert proc.returncode != 0 and "not a design point of the campaign: (0.3, 0.05)" in proc.stderr


@pytest.mark.slow
def test_sky_fit_coverage_script_saves_its_skies_and_fits_them_again(tmp_path):
    """experiments/sky_fit_coverage.py on the shipped IceCube-like artifact (by name) with 3 skies at nside 8:
    it writes coverage.json (with the skies against the model at the truth), p_values.png and the
    skies, and the coverage over all entries (the share of intervals that cover equals the mean of
    the entries', and an exact method's expected count within the band is binomial); --skies-from
    fits the same skies to the same χ² (same artifact, deterministic fits), and
    refuses skies made with another seed or at another time (--time-factor), too few toys for
    --calibrated-intervals (the flag and its check are jaxcr fit's), and a pooled artifact for
    --covariance-at-estimate."""
    first, again = tmp_path / "first", tmp_path / "again"
    common = ["--artifact", "icecube", "--truth", "1.0", "0.1", "--skies", "3",  # the shipped artifact by name
              "--sky-nside", "8", "--form", "offset-lognormal"]  # fmt: skip
    proc = _script("sky_fit_coverage.py", *common, "--out", str(first))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (first / "p_values.png").stat().st_size > 0 and len(list((first / "skies").glob("*.csv"))) == 3
    proc = _script("sky_fit_coverage.py", *common, "--skies-from", str(first), "--out", str(again))
    assert proc.returncode == 0, proc.stderr[-3000:]
    chi2 = [
        [f["chi2"] for f in json.loads((d / "coverage.json").read_text())["truths"][0]["forms"]["offset-lognormal"]["known"]["fits"]]
        for d in (first, again)
    ]  # fmt: skip
    assert len(chi2[0]) == 3 and chi2[0] == pytest.approx(chi2[1], rel=1e-9)
    proc = _script("sky_fit_coverage.py", *common, "--seed", "1", "--skies-from", str(first), "--out", str(again))
    assert proc.returncode != 0 and "made with other settings" in proc.stdout + proc.stderr
    report = json.loads((first / "coverage.json").read_text())
    cells = report["truths"][0]["forms"]["offset-lognormal"]
    shares = [row["coverage_68"] for c in cells.values() for row in c["summary"].values() if isinstance(row, dict)]
    overall = report["overall"]["68"]  # 2 modes × (σ², ρ) + the free gradient: 5 entries of 3 skies
    assert overall["entries"] == 5 and overall["intervals"] == 15
    assert overall["coverage"] == pytest.approx(np.mean(shares), rel=1e-12)
    p = overall["target"]  # of 3 skies only 2 covering (0.67) lies within 0.68 ± 0.10
    assert overall["exact_in_band"] == pytest.approx(5 * 3 * p**2 * (1 - p), rel=1e-12)
    at_truth = report["truths"][0]["at_truth"]["offset-lognormal"]
    assert at_truth["skies"] == 3 and len(at_truth["mean_z"]) == len(at_truth["sd_z"]) == 14  # ℓ 1..14
    proc = _script(
        "sky_fit_coverage.py", *common, "--time-factor", "2", "--skies-from", str(first), "--out", str(again)
    )
    assert proc.returncode != 0 and "made with other settings" in proc.stdout + proc.stderr  # skies at twice the time
    proc = _script("sky_fit_coverage.py", *common, "--calibrated-intervals", "10", "--out", str(again))
    assert proc.returncode != 0 and "--calibrated-intervals takes at least 50 toys" in proc.stderr  # jaxcr fit's flag
    proc = _script("sky_fit_coverage.py", *common, "--covariance-at-estimate", "icecube", "--out", str(again))
    assert proc.returncode != 0 and "needs an artifact built with --sky-scatter local" in proc.stderr  # a pooled one


@pytest.mark.slow
def test_joint_fit_coverage_script_fits_pairs_alone_and_together(tmp_path):
    """experiments/joint_fit_coverage.py on the shipped wide IceCube-like artifact, 2 skies per energy
    at nside 8: it saves the 4 skies and coverage.json with every fit type. Each single fit's λ_c
    interval is r_L/ρ of its ρ interval (1e-12), each sky's energy is the one asked for, and a truth
    outside the box, or the same energy twice, is refused before any sky is made."""
    out = tmp_path / "out"
    common = ["--skies", "2", "--sky-nside", "8", "--form", "offset-lognormal"]
    proc = _script("joint_fit_coverage.py", *common, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "coverage.json").read_text())
    assert sorted(report["types"]) == ["alone_20_tev", "alone_40_tev", "joint"]
    r_l = report["larmor_radius_pc"]
    for k, kind in enumerate(("alone_20_tev", "alone_40_tev")):
        for fit in report["types"][kind]["fits"]:
            rho = fit["intervals"]["rho"]["68"]
            lambda_c = fit["intervals"]["lambda_c_pc"]["68"][:2]
            assert lambda_c == pytest.approx([r_l[k] / rho[1], r_l[k] / rho[0]], rel=1e-12)
            assert fit["spectra"][0]["spectrum"]["energy_tev"] == [20.0, 40.0][k]
    assert len(report["types"]["joint"]["fits"]) == 2 and len(list((out / "skies").glob("*.csv"))) == 4
    for bad in (["--lambda-c-pc", "0.01"], ["--energies", "20", "20"]):
        proc = _script("joint_fit_coverage.py", *common, *bad, "--out", str(tmp_path / "bad"))
        assert proc.returncode != 0 and ("outside the artifact's box" in proc.stderr or "two different" in proc.stderr)
        assert not (tmp_path / "bad" / "skies").exists()
