"""Does the pair model carry an emulator beyond its simulated box? A held-out test on a campaign.

    python experiments/pair_model_extrapolation.py [--campaign results/shipped_campaign_rho001]
        [--train-rho-min 0.05] [--out results/pair_model_extrapolation]

For each analysis of a finished campaign (one made by `experiments/shipped_artifacts.py --sigma2 0.3 6
--rho 0.01 0.2`): the artifact of all design points fixes the time (the convergence diagnostic's) and
the multipoles. Then emulators are built from the design points with ρ ≥ --train-rho-min only:

* **pair, transfer 0**: the shipped pair-model law (jaxcr.pair_model) carries the (σ², ρ)
  dependence, the campaign fixes a per-ℓ transfer (degree 0);
* **pair, transfer 1**: the same with a transfer linear in (ln σ², ln ρ) (the artifact default);
* **quadratic**: the box emulator, ⟨ln C_ℓ⟩ quadratic in (ln σ², ln ρ), extrapolated (only where
  the training points have three values of each parameter).

Each predicts ⟨ln C_ℓ⟩ at the held-out points (ρ below --train-rho-min), which the campaign
measured: per point and ℓ the difference measured − predicted, its z against the measurement's
standard error and the emulator's own error combined, and the difference in units of one sky's
scatter (√Λ_ℓℓ: what a fit on one sky feels). Writes extrapolation.json and extrapolation.png.
"""

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np

from jaxcr import io
from jaxcr.inference import Campaign, SpectrumEmulator
from jaxcr.inference.artifact_build import build_artifact, campaign_spectra, realisation_moments
from jaxcr.inference.campaign import software_versions
from jaxcr.pair_model import PairModelBaseline, shipped_pair_model_law
from jaxcr.recipes.command import CommandParser, run_command

VARIANTS = ("pair, transfer 0", "pair, transfer 1", "quadratic")


def _log_moments(spectra, noises, t_ell, j, ells):
    """Per design point, of its noise-corrected spectra at time index j: ⟨ln C_ℓ⟩ (K, L) and
    Cov(ln C_ℓ, ln C_ℓ') (K, L, L), as the artifact computes them."""
    c = [x[:, j] - n[:, j, None] * t_ell for x, n in zip(spectra, noises)]
    moments = [realisation_moments(ck[:, ells]) for ck in c]
    return np.array([m[2] for m in moments]), np.array([m[3] for m in moments])


def _emulators(spec, log_means, log_covs, ells, train):
    """The emulators of the module docstring, fitted to the training points' moments only."""
    design, n_real = spec.design[train], np.asarray(spec.realisations)[train]
    low, high = design.min(0), design.max(0)
    box = ((low + high) / 2, (high - low) / 2)
    baseline = PairModelBaseline(shipped_pair_model_law(), ells, spec.model.cos2_gradient_b0)
    out = {
        label: SpectrumEmulator.fit_log(
            design, log_means[train], log_covs[train], n_real, degree, *box, baseline=baseline
        )
        for degree, label in ((0, VARIANTS[0]), (1, VARIANTS[1]))
    }
    if min(len(np.unique(design[:, i])) for i in range(design.shape[1])) >= 3:  # a quadratic needs three values each
        out[VARIANTS[2]] = SpectrumEmulator.fit_log(design, log_means[train], log_covs[train], n_real, 2, *box)
    return out


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/pair_model_extrapolation.py", description=__doc__)
    ap.add_argument(
        "--campaign", type=Path, default=Path("results/shipped_campaign_rho001"), help="a finished campaign"
    )
    ap.add_argument("--train-rho-min", type=float, default=0.05, help="train on ρ ≥ this, test below (default 0.05)")
    ap.add_argument("--out", type=Path, default=Path("results/pair_model_extrapolation"), help="output folder")
    args = ap.parse_args(argv)
    io.check_writable("--out", args.out / "extrapolation.json")
    campaign = Campaign.open(args.campaign)
    spec = campaign.spec
    rho = np.exp(spec.design[:, spec.parameters.names.index("rho")])
    train, held = np.flatnonzero(rho >= args.train_rho_min), np.flatnonzero(rho < args.train_rho_min)
    if len(held) == 0 or len(train) < 6:
        ap.error(f"--train-rho-min {args.train_rho_min} leaves {len(train)} training and {len(held)} held-out points")
    result: dict = dict(campaign=str(args.campaign), train_rho_min=args.train_rho_min, analyses={})
    for analysis in spec.analyses:
        full = build_artifact(campaign, analysis.name)
        spectra, noises, _ = campaign_spectra(campaign, analysis.name)
        t_ell, _ = analysis.noise_response(spec.model.nside)
        log_means, log_covs = _log_moments(spectra, noises, t_ell, spec.times.index(full.time), full.ells)
        emulators = _emulators(spec, log_means, log_covs, full.ells, train)
        rows = []
        for k in held:
            theta, mean, sky_sd = spec.design[k], log_means[k], np.sqrt(np.diag(log_covs[k]))
            se = sky_sd / np.sqrt(spec.n_realisations(k))
            row = dict(sigma2=float(np.exp(theta[0])), rho=float(np.exp(theta[1])), ells=full.ells.tolist())
            for label, emu in emulators.items():
                pred = np.asarray(emu.log_mean(theta))
                emu_sd = np.sqrt(np.diag(np.asarray(emu.log_covariance(theta, 10**12))))
                diff = mean - pred
                z = diff / np.hypot(se, emu_sd)
                row[label] = dict(diff=diff.tolist(), z=z.tolist(), in_sky_sd=(diff / sky_sd).tolist(),
                                  chi2_per_ell=float(np.mean(z**2)), emulator_sd=emu_sd.tolist())  # fmt: skip
            rows.append(row)
        result["analyses"][analysis.name] = dict(time=full.time, ells=full.ells.tolist(), points=rows)
        print(f"\n{analysis.name}: {full.summary()}")
        print(f"trained on {len(train)} points with ρ ≥ {args.train_rho_min:g}; held out {len(held)}")
        print("σ²     ρ       " + "".join(f"{v:>38}" for v in emulators))
        print("               " + "   median Δ  |Δ|/sky sd  χ²/ℓ (z)" * len(emulators))
        for row in rows:
            cells = "".join(
                f"   {np.median(row[v]['diff']):+8.2f}  {np.median(np.abs(row[v]['in_sky_sd'])):9.2f}  "
                f"{row[v]['chi2_per_ell']:9.2f}"
                for v in emulators
            )
            print(f"{row['sigma2']:<6.3g} {row['rho']:<7.3g}{cells}")
    result["law"] = shipped_pair_model_law().as_dict()
    result["versions"] = software_versions()
    io.write_json(args.out / "extrapolation.json", result)
    _plot(result, args.out / "extrapolation.png")
    print(f"wrote {args.out / 'extrapolation.json'} and {args.out / 'extrapolation.png'}")
    return 0


def _plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    analyses = result["analyses"]
    variants = [v for v in VARIANTS if v in next(iter(analyses.values()))["points"][0]]
    fig, axes = plt.subplots(len(analyses), len(variants), figsize=(4.2 * len(variants), 3.4 * len(analyses)),
                             squeeze=False, sharey=True)  # fmt: skip
    for i, (name, a) in enumerate(analyses.items()):
        for jv, v in enumerate(variants):
            ax = axes[i, jv]
            for row in a["points"]:
                ax.plot(row["ells"], row[v]["diff"], "o-", ms=3, label=f"σ² {row['sigma2']:.2g}, ρ {row['rho']:.2g}")
            ax.axhline(0, color="k", lw=0.8)
            ax.set_title(f"{name}: {v}", fontsize=9)
            ax.set_xlabel("ℓ")
            if jv == 0:
                ax.set_ylabel("measured − predicted ⟨ln C_ℓ⟩")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"held-out points below ρ = {result['train_rho_min']:g}", fontsize=10)
    fig.tight_layout()
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(run_command("python experiments/pair_model_extrapolation.py", main))
