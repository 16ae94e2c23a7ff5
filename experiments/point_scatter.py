"""Where the likelihood's covariance of ln C_ℓ is honest: each design point's scatter against it.

    python experiments/point_scatter.py --campaign FOLDER --artifact icecube-wide [--record OUT.npz]

The one-sky likelihood uses a covariance of ln C_ℓ pooled over the design (the mean of the points'
own); artifacts built with ``--sky-scatter local`` also hold one local to θ, which calibrated
intervals draw their toys with. For every design point of the artifact this takes the campaign's
realisations at the artifact's time there, their deconvolved moments (jaxcr.inference.pixel_noise,
as the artifact was built), and prints the point's Var(ln C_ℓ) over the pooled one: the mean over
ℓ (what artifacts record as ``point_scatter`` and profile-interval fits flag beyond 1.5 or below
1/1.5) and its range, and how far the point's ⟨ln C_ℓ⟩ sits from the emulator (in pooled SDs of one
sky's ln C_ℓ, with its standard error from the point's N_B realisations). Beside it, held out: the
same ratio against the variance an emulator fitted to the other points predicts there, pooled and
local (``--sky-scatter pooled`` and ``local``), with the spread of its logarithm over the points (about
0.25 from 32 realisations' sampling alone, more for heavy tails).
It also refits the artifact's emulator of ⟨ln C_ℓ⟩ from these moments and prints the largest
difference from the artifact's, at the design points: 0 (round-off) when the campaign holds the
realisations the artifact was built from. The campaign may be a remake that stores only the
artifact's time (``jaxcr campaign create`` with the artifact's box, ``--separation-times 1`` and
the lengthened points lengthened): its maps are the same when the integration is.

It also prints the realisations' tails against the pooled covariance (pixel noise kept): the ν of
the multivariate t that describes their D², and per ℓ the excess kurtosis and skewness of each
point's residuals in units of its own SD.

--record OUT.npz writes the artifact with the per-point ratios in its provenance (its version, a
hash of its arrays, is unchanged), but only when the refit equals the artifact's (1e-6 e-folds).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np

from jaxcr import io
from jaxcr.inference.artifact import EmulatorArtifact
from jaxcr.inference.artifact_build import (
    point_scatter,
    point_scatter_record,
    point_variance_ratios,
)
from jaxcr.inference.campaign import Campaign
from jaxcr.inference.emulator import SpectrumEmulator, poly_features
from jaxcr.inference.flags import POINT_SCATTER_FACTOR
from jaxcr.inference.pixel_noise import deconvolved_log_moments
from jaxcr.inference.realisation_skies import point_spectra
from jaxcr.inference.shipped import check_artifact_path
from jaxcr.inference.tails import dof_from_distances
from jaxcr.options import SkyScatter
from jaxcr.recipes.command import CommandParser, run_command

SAME_MODEL = 1e-6  # e-folds: a refit this close to the artifact's is the artifact's own campaign


def point_moments(campaign: Campaign, artifact: EmulatorArtifact) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deconvolved ⟨ln S_ℓ⟩ (K, L) and Cov (K, L, L) of every design point at the artifact's time,
    and the realisations' ln C_ℓ less their point's mean, pixel noise kept (K arrays (R_k, L); floored at
    10⁻³ of the mean as the artifact's plain log moments are)."""
    ells = np.asarray(artifact.ells)
    t_ell, v_ell = artifact.analysis.noise_response(campaign.spec.model.nside)
    means, covs, residuals = [], [], []
    for k in range(len(campaign.spec.design)):
        c, noise = point_spectra(campaign, artifact, k)
        mu, cov = deconvolved_log_moments(c[:, ells], noise, t_ell[ells], v_ell[ells])
        means.append(mu)
        covs.append(cov)
        logs = np.log(np.maximum(c[:, ells], 1e-3 * np.abs(c[:, ells].mean(0))))
        residuals.append(logs - logs.mean(0))
    return np.array(means), np.array(covs), residuals


def realisation_tails(residuals) -> dict | None:
    """The realisations' tails: the ν of the multivariate t that describes their D² against the
    covariance pooled over the design (:func:`jaxcr.inference.tails.dof_from_distances`; R/(R − 1)
    for the fitted point means), and per ℓ the excess kurtosis and skewness of each point's
    residuals in units of its own SD (no pooling), pooled over the points. None for fewer than 10
    realisations in all."""
    from scipy import stats

    counts, n = np.array([len(x) for x in residuals]), residuals[0].shape[1]
    if counts.sum() < 10:
        return None
    pooled = sum(x.T @ x for x in residuals) / np.sum(counts - 1)
    inverse = np.linalg.inv(pooled)
    d2 = np.concatenate([np.einsum("ra,ab,rb->r", x, inverse, x) * len(x) / (len(x) - 1) for x in residuals])
    _, record = dof_from_distances(d2, n)
    z = np.concatenate([x / x.std(0, ddof=1) for x in residuals])
    return record | dict(excess_kurtosis=stats.kurtosis(z, axis=0).tolist(), skewness=stats.skew(z, axis=0).tolist())


def held_out_ratios(design, means, covs, n_realisations, emu: SpectrumEmulator, scatter: SkyScatter):
    """Per design point, its Var(ln C_ℓ) over the variance an emulator fitted to the other points
    (of ``n_realisations`` N_B,k each, (K,)) predicts there (mean over ℓ): pooled or local
    (``scatter``; the local width chosen anew)."""
    out = []
    for k in range(len(design)):
        rest = np.arange(len(design)) != k
        fit = SpectrumEmulator.fit_log(
            design[rest], means[rest], covs[rest], n_realisations[rest], emu.degree, emu.centre, emu.scale,
            scatter=scatter,
        )  # fmt: skip
        out.append(point_scatter(covs[k : k + 1], fit, design[k : k + 1])[0])
    return np.array(out)


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/point_scatter.py", description=__doc__)
    ap.add_argument("--campaign", type=Path, required=True, help="the campaign folder (all points done)")
    ap.add_argument("--artifact", type=Path, required=True, help="emulator artifact (a file or a shipped name)")
    ap.add_argument("--record", type=Path, help="write the artifact with the per-point ratios here (.npz)")
    args = ap.parse_args(argv)
    if args.record is not None:
        io.check_writable("--record", args.record)
    artifact = EmulatorArtifact.load(check_artifact_path(args.artifact))
    campaign = Campaign.open(args.campaign)
    spec = campaign.spec
    if campaign.pending():
        ap.error(f"{len(campaign.pending())} design points of {args.campaign} are not done: run the campaign first")
    design = np.asarray(artifact.provenance["campaign"]["design"], dtype=float)
    if spec.design.shape != design.shape or not np.allclose(spec.design, design, rtol=0, atol=1e-12):
        ap.error(f"{args.campaign}'s design is not the one the artifact {artifact.version} was built on")
    means, covs, residuals = point_moments(campaign, artifact)
    emu = artifact.log_emulator
    n_real = np.array([spec.n_realisations(k) for k in range(len(design))])
    refit = SpectrumEmulator.fit_log(
        design, means, covs, n_real, emu.degree, emu.centre, emu.scale,
        scatter=SkyScatter.POOLED if emu.point_covs is None else SkyScatter.LOCAL,
    )  # fmt: skip
    features = poly_features((design - emu.centre) / emu.scale, emu.degree)
    difference = float(np.max(np.abs(features @ (refit.coef - emu.coef))))
    per_ell = point_variance_ratios(covs, refit.pooled(), design)
    ratio = per_ell.mean(1)  # what artifact_build.point_scatter_record records as "ratio"
    print(f"{artifact.summary()}\ncampaign {args.campaign}: {len(design)} design points")
    print(
        f"refit of ⟨ln C_ℓ⟩ against the artifact's, at the design points: largest difference {difference:.2g} e-folds"
    )
    enough = len(design) >= 4  # a local covariance from the other points needs three of them
    held_out = {
        s: held_out_ratios(design, means, covs, n_real, emu, s) if enough else ratio * np.nan for s in SkyScatter
    }
    # each point's mean against the emulator, in pooled SDs of one sky's ln C_ℓ, and its SE
    sd = np.sqrt(np.diag(np.asarray(refit.rel)))
    offset = (means - np.array([np.asarray(refit.log_mean(t)) for t in design])) / sd
    offset_se = np.sqrt(np.diagonal(covs, axis1=1, axis2=2) / n_real[:, None]) / sd
    print(
        "design point              Var(ln C_ℓ) / the pooled one: mean over ℓ (range)   held out: pooled, local"
        "   ⟨ln C_ℓ⟩ − emulator in pooled SDs over ℓ (SE)   N_B"
    )
    for k, (r, row) in enumerate(zip(ratio, per_ell)):
        v = spec.values(k)
        mark = "  <- flagged" if not 1 / POINT_SCATTER_FACTOR <= r <= POINT_SCATTER_FACTOR else "            "
        print(
            f"  {k:2d}  σ² = {v['sigma2']:<6.3g} ρ = {v['rho']:<7.3g} {r:5.2f} ({row.min():.2f}-{row.max():.2f}){mark}"
            f"   {held_out[SkyScatter.POOLED][k]:5.2f} {held_out[SkyScatter.LOCAL][k]:5.2f}"
            f"   {offset[k].min():+.2f} … {offset[k].max():+.2f} ({offset_se[k].min():.2f}-{offset_se[k].max():.2f})"
            f"   {n_real[k]}"
        )
    for s in SkyScatter:
        r, name = held_out[s], s.value
        if not enough:
            print(f"held out, {name}: needs at least 4 design points")
            continue
        inside = np.sum((r >= 1 / POINT_SCATTER_FACTOR) & (r <= POINT_SCATTER_FACTOR))
        print(
            f"held out, {name}: {r.min():.2f}-{r.max():.2f}, SD of the ln ratio {np.std(np.log(r)):.2f}, "
            f"{inside} of {len(r)} within 1/{POINT_SCATTER_FACTOR:g}-{POINT_SCATTER_FACTOR:g}"
        )
    tails = realisation_tails(residuals)
    if tails is None:
        print("the realisations' tails: fewer than 10 realisations in all")
        return _record(args, artifact, covs, refit, design, difference)
    q = ", ".join(
        f"{a:.3g} ({b:.3g}, {c:.3g})"
        for a, b, c in zip(*(tails[f] for f in ("d2_quantiles", "gaussian_quantiles", "student_quantiles")))
    )
    print(
        f"the realisations against the pooled covariance (pixel noise kept): D² median, 90 %, 99 % {q} "
        f"(Gaussian, t); the t that fits them: ν = {tails['dof']:.3g}\n"
        "per point in units of its own SD, per ℓ: excess kurtosis "
        + " ".join(f"{v:.2f}" for v in tails["excess_kurtosis"])
        + ", skewness "
        + " ".join(f"{v:+.2f}" for v in tails["skewness"])
        + "; pixel-noise correction / ⟨C_ℓ⟩ (largest over the points) "
        + " ".join(f"{v:.2f}" for v in artifact.noise_fraction)
    )
    return _record(args, artifact, covs, refit, design, difference)


def _record(args, artifact: EmulatorArtifact, covs, refit: SpectrumEmulator, design, difference: float) -> int:
    """--record: the artifact with the per-point ratios in its provenance, if the refit is the artifact's."""
    if args.record is None:
        return 0
    if difference > SAME_MODEL:
        raise SystemExit(
            f"--record: the refit differs from the artifact's emulator by {difference:.2g} e-folds (> {SAME_MODEL:g}): "
            f"the artifact was not built from the deconvolved moments of {args.campaign}'s realisations (another "
            "campaign, or --pixel-noise-scatter kept)"
        )
    record = point_scatter_record(covs, refit, design) | dict(
        recomputed_from=str(args.campaign), refit_difference=difference
    )
    recorded = dataclasses.replace(artifact, provenance=artifact.provenance | dict(point_scatter=record))
    path = recorded.save(args.record)
    print(f"wrote {path} (version {recorded.version}, unchanged)")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("python experiments/point_scatter.py", main))
