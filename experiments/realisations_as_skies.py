"""A campaign's own realisations, each fitted as one observed sky: what the estimator does at a
design point when the data come from the model itself.

    python experiments/realisations_as_skies.py --campaign FOLDER --artifact A.npz --point SIGMA2 RHO
        [--skies-from SKY_FIT_COVERAGE_OUT] [--out results/realisations_as_skies]

At the design point θ_k = (--point) of the artifact's campaign, each realisation's spectrum less
its pixel noise, c_r = Ĉ_r − N̂_r t_ℓ on the artifact's multipoles, is one sky of unit amplitude
whose measurement error is that pixel noise's fluctuation, σ_ℓ² = v_ℓ N̂_r² (1 + 2 c_r/(t_ℓ N̂_r))
(jaxcr.analysis.white_noise_variance; at least 10⁻³ c_r), as mock skies count their own pixel
noise as noise of the observation. The log-normal form refuses those with c_r ≤ 0 at some ℓ, as it refuses such mock
skies. Each is fitted with the amplitude known, as
sky_fit_coverage.py fits its mock skies with the gradient known. The script reports the coverage
of the 68 % and 95 % profile intervals, the pulls and the median estimates, and λ = −2 ln L(θ_k) +
2 ln L(θ̂), the profile statistic at the truth. For a regular problem λ follows χ²₂, with 68 % and
95 % points 2.28 and 5.99.

--skies-from takes the saved mock skies of a sky_fit_coverage.py run at the same truth (its --out)
and fits them the same way, at the amplitude that run recorded. It then compares the two sets:
the skies' coverage with the realisations' λ quantiles as thresholds (the Neyman construction with
the realisations as toys), and the two-sample Kolmogorov-Smirnov test of their λ.

Where the skies' λ and the realisations' λ agree, a bias or a coverage shortfall that the
realisations show as well belongs to the estimator at that point (a ridge, a box edge), not to a
model that the skies contradict. The realisations are in-sample, because the emulator was fitted
to their mean, which makes their fits a little kinder.
Writes realisations.json (every fit's estimate, intervals and λ, the settings and versions) and prints a table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import json

import jax.numpy as jnp
import numpy as np
import scipy.stats
from sky_fit_coverage import summarise

from jaxcr import io
from jaxcr.inference.artifact import EmulatorArtifact
from jaxcr.inference.campaign import Campaign, software_versions
from jaxcr.inference.realisation_skies import realisation_skies
from jaxcr.inference.shipped import check_artifact_path
from jaxcr.inference.sky_fit import fit_sky, sky_likelihood
from jaxcr.observations import load_spectrum
from jaxcr.recipes.command import CommandParser, run_command

CHI2_2 = {"68": 2.2788, "95": 5.9915}  # χ²₂ quantiles at 68.27 % and 95.45 %


def fit_set(skies, artifact: EmulatorArtifact, truth: dict, amplitude: float) -> tuple[list, np.ndarray, int]:
    """Each sky's fit (as_dict) and λ at the truth; the skies the log-normal form refuses are counted."""
    phi_truth = jnp.asarray(artifact.parameters.coordinates(truth))
    fits, lam, refused = [], [], 0
    for sky in skies:
        try:
            like = sky_likelihood(sky, artifact, amplitude=amplitude)
        except ValueError as err:
            if not str(err).startswith("Ĉ_ℓ − N ≤ 0"):  # the log-normal form's refusal; anything else is an error
                raise
            refused += 1
            continue
        fit = fit_sky(sky, artifact, amplitude=amplitude, progress=False).as_dict()
        lam.append(float(like.terms(phi_truth)[0]) - fit["m2lnl"])  # < 0: the fit missed its maximum
        fits.append(fit)
    return fits, np.array(lam), refused


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/realisations_as_skies.py", description=__doc__)
    ap.add_argument(
        "--campaign", type=Path, required=True,
        help="a campaign of the artifact's model with --point in its design: the artifact's own, or one of another "
        "seed (out of sample) or nside",
    )  # fmt: skip
    ap.add_argument(
        "--artifact",
        type=Path,
        required=True,
        help="emulator artifact (jaxcr campaign artifact), or a shipped one by name",
    )
    ap.add_argument("--point", type=float, nargs=2, required=True, metavar=("SIGMA2", "RHO"), help="a design point")
    ap.add_argument("--skies-from", type=Path, help="a sky_fit_coverage.py --out with skies at --point")
    ap.add_argument("--out", type=Path, default=Path("results/realisations_as_skies"), help="output folder")
    args = ap.parse_args(argv)
    io.check_writable("--out", args.out / "realisations.json")
    artifact = EmulatorArtifact.load(check_artifact_path(args.artifact))
    campaign = Campaign.open(args.campaign)
    k, distance = campaign.spec.nearest_point(dict(sigma2=args.point[0], rho=args.point[1]))
    if not distance < 1e-3:
        points = campaign.spec.points_text(range(len(campaign.spec.design)))
        ap.error(f"--point {args.point} is not a design point of {args.campaign} (within 1e-3 e-folds): {points}")
    truth = {n: float(v) for n, v in campaign.spec.values(k).items()}  # the point exactly
    sets = {"realisations": fit_set(realisation_skies(campaign, artifact, k), artifact, truth, 1.0)}
    if args.skies_from is not None:
        if not (args.skies_from / "coverage.json").exists():
            ap.error(f"--skies-from {args.skies_from} holds no coverage.json: give a sky_fit_coverage.py --out")
        earlier = json.loads((args.skies_from / "coverage.json").read_text())
        settings = earlier["settings"]
        if earlier["artifact_time"] != artifact.time or settings["time_factor"] != 1:
            ap.error(f"--skies-from {args.skies_from}: its skies were made at another time than the artifact's")
        made = np.asarray(settings["truth"], dtype=float)
        if not np.any(np.all(np.abs(np.log(made) - campaign.spec.design[k]) < 1e-3, axis=1)):
            ap.error(f"--skies-from {args.skies_from} holds skies at {made.tolist()}, not at design point {k}")
        paths = sorted((args.skies_from / "skies").glob("truth*_sky*.csv"))
        sets["skies"] = fit_set([load_spectrum(p) for p in paths], artifact, truth, settings["amplitude"])
    report: dict = dict(artifact=artifact.version, design_point=k, truth=truth, settings=vars(args), sets={},
                        versions=software_versions())  # fmt: skip
    print(f"design point {k} {campaign.spec.points_text([k])}, artifact {artifact.version}, gradient known:")
    for name, (fits, lam, refused) in sets.items():
        if len(fits) < 2:
            raise SystemExit(f"{name}: only {len(fits)} of {len(fits) + refused} could be fitted (c_r ≤ 0 at some ℓ)")
        s = summarise(fits, truth)
        row = dict(fits=len(fits), refused=refused, summary=s, lam=lam.tolist(),
                   estimates=[{p: f["parameters"][p] for p in truth} for f in fits],
                   intervals=[{p: f["intervals"][p] for p in truth} for f in fits],
                   lam_quantiles={q: float(np.quantile(lam, float(q) / 100)) for q in ("50", "68", "95")},
                   below_chi2_2={q: float(np.mean(lam <= v)) for q, v in CHI2_2.items()})  # fmt: skip
        report["sets"][name] = row
        print(
            f"  {name}: {len(fits)} fitted, {refused} refused; λ at the truth below χ²₂'s 68/95 % points "
            f"{row['below_chi2_2']['68']:.2f}/{row['below_chi2_2']['95']:.2f}; λ quantiles 50/68/95 % "
            + "/".join(f"{v:.2f}" for v in row["lam_quantiles"].values())
        )
        for p in artifact.parameters.names:
            r = s[p]
            print(
                f"    {p:7s} 68 % coverage {r['coverage_68']:.2f}, 95 % {r['coverage_95']:.2f}, pull "
                f"{r['mean_pull']:+.2f} ± {r['pull_se']:.2f}, median estimate {r['median_estimate']:.3g}, "
                f"below the truth {np.mean([f['parameters'][p] < truth[p] * (1 - 1e-9) for f in fits]):.2f}"
            )
    if "skies" in sets:
        own, skies = sets["realisations"][1], sets["skies"][1]
        q68, q95 = np.quantile(own, [0.6827, 0.9545])
        ks = scipy.stats.ks_2samp(skies, own)
        report["skies_by_realisation_quantiles"] = dict(
            coverage_68=float(np.mean(skies <= q68)), coverage_95=float(np.mean(skies <= q95)),
            ks=[float(ks.statistic), float(ks.pvalue)],
        )  # fmt: skip
        print(
            f"  the skies with the realisations' λ quantiles as thresholds: 68 % coverage {np.mean(skies <= q68):.2f}, "
            f"95 % {np.mean(skies <= q95):.2f}; their λ against the realisations': KS D = {ks.statistic:.2f}, "
            f"p = {ks.pvalue:.2g}"
        )
    io.write_json(args.out / "realisations.json", report)
    print(f"wrote {args.out / 'realisations.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("python experiments/realisations_as_skies.py", main))
