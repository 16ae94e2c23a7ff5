"""How often the joint (σ², ρ) region holds the truth: χ²₂'s critical values against those
calibrated on a campaign's realisations (jaxcr campaign thresholds).

    python experiments/region_coverage.py --artifact A.npz --thresholds T.json --skies-from OUT [OUT …]
        [--out results/region_coverage]

--skies-from takes sky_fit_coverage.py runs (their --out, which hold the mock skies and their
truths, or name the run whose skies they refitted). The region λ(θ) ≤ c(θ) holds the truth θ₀ of a sky exactly when λ(θ₀) ≤ c(θ₀), so each
sky's λ at its truth is computed with the likelihood the thresholds were calibrated with (form, sky
scatter, tails; jaxcr.inference.region_calibration.statistics_at_truth, the amplitude as the run
recorded) and compared with χ²₂'s 2.30 and 6.18 and
with the calibrated c(θ₀), interpolated between the calibration's design points (χ²₂'s outside
their hull, which the table marks). The coverage is printed with its binomial SE,
√(P(1 − P)/n). Writes coverage.json with every λ, the settings and the versions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import json

import numpy as np

from jaxcr import io
from jaxcr.inference.artifact import EmulatorArtifact
from jaxcr.inference.campaign import software_versions
from jaxcr.inference.joint_region import CHI2_2, RegionThresholds
from jaxcr.inference.neyman import LEVEL_PROBABILITIES
from jaxcr.inference.region_calibration import statistics_at_truth
from jaxcr.inference.shipped import check_artifact_path
from jaxcr.observations import load_spectrum
from jaxcr.recipes.command import CommandParser, run_command


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/region_coverage.py", description=__doc__)
    ap.add_argument("--artifact", type=Path, required=True, help="the artifact the skies were fitted on")
    ap.add_argument("--thresholds", type=Path, required=True, help="a jaxcr campaign thresholds file for it")
    ap.add_argument("--skies-from", type=Path, nargs="+", required=True, help="sky_fit_coverage.py --out folders")
    ap.add_argument("--out", type=Path, default=Path("results/region_coverage"), help="output folder")
    args = ap.parse_args(argv)
    io.check_writable("--out", args.out / "coverage.json")
    artifact = EmulatorArtifact.load(check_artifact_path(args.artifact))
    thresholds = RegionThresholds.load(args.thresholds)
    wanted = thresholds.settings["fit"]  # the likelihood the thresholds were calibrated with
    if wanted["amplitude_free"]:
        ap.error("--thresholds were calibrated with the amplitude free; the mock skies are fitted with it known")
    runs = []
    for folder in args.skies_from:
        if not (folder / "coverage.json").exists():
            ap.error(f"--skies-from {folder} holds no coverage.json: give a sky_fit_coverage.py --out")
        settings = json.loads((folder / "coverage.json").read_text())["settings"]
        while not (folder / "skies").is_dir() and settings.get("skies_from"):  # a run that refitted another's skies
            folder = Path(settings["skies_from"])
            settings = json.loads((folder / "coverage.json").read_text())["settings"]
        if settings["time_factor"] != 1:
            ap.error(f"--skies-from {folder}: its skies were made at another time than the artifact's")
        runs.append((folder, settings))
    rows, report = [], dict(artifact=artifact.version, thresholds=str(args.thresholds), truths=[],
                            settings={k: str(v) for k, v in vars(args).items()}, versions=software_versions())  # fmt: skip
    for folder, settings in runs:
        for i, truth in enumerate(settings["truth"]):
            skies = [load_spectrum(p) for p in sorted((folder / "skies").glob(f"truth{i}_sky*.csv"))]
            theta = artifact.parameters.coordinates(dict(zip(artifact.parameters.names, truth)))
            lam, refused, fit_settings = statistics_at_truth(
                skies, artifact, theta, amplitude=settings["amplitude"], form=wanted["form"],
                sky_scatter=wanted["sky_scatter"], tails="student-t" if wanted["tail_dof"] else "gaussian",
                tail_dof=wanted["tail_dof"],
            )  # fmt: skip
            thresholds.check_matches(fit_settings)
            calibrated, inside = thresholds.at(theta[None])
            row = dict(truth=truth, skies=len(lam), refused=refused, lam=lam.tolist(), calibrated=bool(inside[0]),
                       critical={lv: float(c[0]) for lv, c in calibrated.items()}, coverage={})  # fmt: skip
            for level, p in LEVEL_PROBABILITIES.items():
                se = float(np.sqrt(p * (1 - p) / len(lam)))
                row["coverage"][level] = dict(
                    chi2_2=float(np.mean(lam <= CHI2_2[level])),
                    calibrated=float(np.mean(lam <= row["critical"][level])),
                    se=se,
                )
            report["truths"].append(row)
            rows.append(row)
    print(f"joint-region coverage on artifact {artifact.version}, thresholds {args.thresholds}:")
    print("  truth (σ², ρ)        skies (refused)  c_68  c_95   68 %: χ²₂ / calibrated   95 %: χ²₂ / calibrated")
    for r in rows:
        c68, c95 = r["coverage"]["68"], r["coverage"]["95"]
        mark = "" if r["calibrated"] else "  (outside the calibration: χ²₂)"
        print(
            f"  ({r['truth'][0]:.4g}, {r['truth'][1]:.4g})".ljust(22)
            + f"{r['skies']:4d} ({r['refused']:2d})     {r['critical']['68']:.2f}  {r['critical']['95']:.2f}   "
            f"{c68['chi2_2']:.2f} / {c68['calibrated']:.2f} ± {c68['se']:.2f}      "
            f"{c95['chi2_2']:.2f} / {c95['calibrated']:.2f} ± {c95['se']:.2f}{mark}"
        )
    io.write_json(args.out / "coverage.json", report)
    print(f"wrote {args.out / 'coverage.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("python experiments/region_coverage.py", main))
