"""Injection-recovery of one-sky fits: do the intervals cover the truth as often as they claim?

    python experiments/sky_fit_coverage.py --artifact results/campaign_fits/icecube_l20.npz \\
        [--truth 1.0 0.1] [--truth 0.5 0.15] [--skies 24] [--gradient-per-pc 0.01] [--b0-mug 3] \\
        [--observatory icecube] [--sky-nside 64] [--form lognormal offset-lognormal gaussian] [--seed 4242]
        [--out results/sky_fit_coverage] [--skies-from EARLIER_OUT] [--gradient known free] [--calibrated-intervals [TOYS]]
        [--time-factor 1] [--sky-scatter pooled|local] [--covariance-at-estimate LOCAL.npz]
        [--tails gaussian|student-t [--tail-dof NU]]

For each truth (σ², r_L/λ_c) it makes --skies single synthetic skies (one field realisation each,
independent of the campaign's, backtracked from every pixel of --sky-nside (default twice the
campaign's, so that the skies' own pixel noise, counted as noise of the observation, is 4×
smaller: a real sky has none) to the artifact's ΩT), observes each with the mock observatory (Poisson counts with the observatory's
event number in its band, background by time-scrambling; jaxcr.synthetic.mock_sky_spectra),
turns the maps into a spectrum by the maps-to-spectrum path (ℓ = 1..the artifact's lmax), and fits
it on the artifact (each likelihood of --form, default lognormal) twice: with the gradient known (--gradient-per-pc, B0 --b0-mug) and with the
amplitude free. It reports, per parameter, how often the 68 % and 95 % profile intervals contain
the truth, the mean and spread of the pull (ln estimate − ln truth)/(the 68 % half-width on the
truth's side; skies whose interval is open on that side, cut by the design box, are counted
apart), how often each direction was flagged poorly constrained, the median χ² p-value and the
Kolmogorov-Smirnov distance of the p-values from uniform (a right likelihood gives uniform
p-values), the skies the likelihood refuses (log-normal: Ĉ_ℓ ≤ N at a fitted ℓ), and the fit time.
Per truth and form it also reports the skies against the model at the truth, before any fit: per ℓ
the mean over skies of (y − μ(θ_true))/σ (y the form's data, μ and σ² its mean and variance there,
gradient known), with its standard error, the mean χ² at the truth (the number of ℓ for a right
model), and the ν of the multivariate t that best describes those χ² (jaxcr.inference.tails): skies
off the emulated mean, or with heavier tails than the model's, show here whatever the fits make of it.
Over all entries (truth × form × gradient mode × parameter) it reports the share of intervals that
cover, how many entries lie within the target band against what an exact method would give (with
20 skies an entry of an exact 68 % interval lies within 0.68 ± 0.10 only 66 % of the time), and
Σ z² of the entries' binomial z-scores.
--time-factor K makes the skies at K times the artifact's time at the truth (is a sky at the truth
still changing there?). --covariance-at-estimate LOCAL.npz refits each sky with one sky's covariance
of ln C_ℓ held at LOCAL's local covariance (--sky-scatter local) at the first fit's estimate: the
local scatter without the information a θ-dependent covariance gives the fit. --sky-scatter local
puts an artifact's local covariance into the likelihood itself; with the default (pooled) on such
an artifact, only the toys of --calibrated-intervals are drawn with it. Writes coverage.json (every fit, the settings and versions) and p_values.png (the χ² p-values per
form and gradient mode: flat for a right likelihood) and prints a table.
The skies' spectrum files are saved under --out/skies/; --skies-from EARLIER_OUT fits those of an
earlier run (made with the same truth, seed, nside, time and amplitude, as their files record)
instead of making them again, so that several artifacts can be tried on the same skies.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx
import numpy as np
import scipy.stats

from jaxcr import io, units
from jaxcr.inference.artifact import EmulatorArtifact
from jaxcr.inference.precision import describe_residuals, residuals_at_truth
from jaxcr.inference.shipped import check_artifact_path
from jaxcr.inference.sky_fit import fit_sky
from jaxcr.observations import OBSERVATORIES, ObservedSpectrum, load_spectrum, save_spectrum
from jaxcr.recipes.command import CommandParser, run_command
from jaxcr.recipes.fit import (
    add_calibrated_intervals_flag,
    add_tails_flags,
    check_calibrated_intervals,
    check_tails,
    fit_options,
)
from jaxcr.synthetic import mock_sky_spectra


def pull(estimate, truth, interval):
    """(ln estimate − ln truth) / the 68 % half-width on the truth's side; NaN where that side of
    the interval is open (cut by the box edge: no width to divide by)."""
    lo, hi, closed_lo, closed_hi = interval
    d = np.log(estimate) - np.log(truth)
    half, closed = (np.log(estimate) - np.log(lo), closed_lo) if d > 0 else (np.log(hi) - np.log(estimate), closed_hi)
    return float(d / half) if half > 0 and closed else float("nan")


def covers(interval, truth):
    """Whether the interval contains the truth; an end at a box edge comes back from exp(ln edge)
    with round-off (0.010000000000000005 for the edge 0.01), so a truth on the edge is compared to
    1e-9 relative."""
    lo, hi, _, _ = interval
    tolerance = 1e-9 * abs(truth)
    return bool(lo - tolerance <= truth <= hi + tolerance)


def summarise(fits, truth):
    out = {}
    for name, value in truth.items():
        rows = [f for f in fits if name in f["intervals"]]
        if not rows:
            continue
        pulls = np.array([pull(f["parameters"][name], value, f["intervals"][name]["68"]) for f in rows])
        out[name] = dict(
            coverage_68=float(np.mean([covers(f["intervals"][name]["68"], value) for f in rows])),
            coverage_95=float(np.mean([covers(f["intervals"][name]["95"], value) for f in rows])),
            mean_pull=float(np.nanmean(pulls)),
            pull_sd=float(np.nanstd(pulls, ddof=1)),
            pull_se=float(np.nanstd(pulls, ddof=1) / np.sqrt(np.sum(np.isfinite(pulls)))),
            pulls_open_side=int(np.sum(~np.isfinite(pulls))),
            median_estimate=float(np.median([f["parameters"][name] for f in rows])),
        )
    out["flagged_fraction"] = float(np.mean([bool(f["flags"]) for f in fits]))
    out["poorly_constrained_fraction"] = [
        float(np.mean([f["directions"][i]["poorly_constrained"] for f in fits])) for i in range(2)
    ]
    p_values = np.array([f["p_value"] for f in fits])
    out["median_p_value"] = float(np.median(p_values))
    # χ² calibration: the p-values of a right likelihood are uniform on [0, 1]
    ks = scipy.stats.kstest(p_values, "uniform")
    out["p_value_ks"] = [float(ks.statistic), float(ks.pvalue)]
    out["p_values"] = p_values.tolist()
    out["median_fit_time_s"] = float(np.median([f["wall_time_s"] for f in fits]))
    return out


LEVELS = {"68": (0.6826894921370859, 0.10), "95": (0.9544997361036416, 0.05)}  # probability, the target band


def coverage_overall(report: dict) -> dict:
    """Coverage over every entry (truth × form × gradient mode × parameter) of a run, per level:
    the share of all intervals that cover, with its binomial SE were the fits independent; how
    many entries lie within the target band (0.68 ± 0.10, 0.95 ± 0.05) against the number an exact
    method would put there (each entry binomial with its number of skies); and Σ z² of the
    entries' binomial z-scores against χ² with one degree of freedom per entry. The entries share
    skies (σ² and ρ of one fit, known and free on one sky), so that p-value is too small."""
    entries = [
        (len(cell["fits"]), row)
        for truth in report["truths"]
        for modes in truth["forms"].values()
        for cell in modes.values()
        for row in cell["summary"].values()
        if isinstance(row, dict) and cell["fits"]
    ]
    out = {}
    for level, (p, band) in LEVELS.items():
        n = np.array([m for m, _ in entries], dtype=float)
        k = np.round(np.array([row[f"coverage_{level}"] for _, row in entries]) * n)
        z = (k - n * p) / np.sqrt(n * p * (1 - p))
        exact_in_band = [
            scipy.stats.binom.cdf(np.floor(m * (p + band) + 1e-9), m, p)
            - scipy.stats.binom.cdf(np.ceil(m * (p - band) - 1e-9) - 1, m, p)
            for m in n
        ]
        out[level] = dict(
            target=p, band=band, intervals=int(n.sum()), coverage=float(k.sum() / n.sum()),
            se=float(np.sqrt(p * (1 - p) / n.sum())), entries=len(n),
            in_band=int(np.sum(np.abs(k / n - p) <= band + 1e-9)), exact_in_band=float(np.sum(exact_in_band)),
            sum_z2=float(np.sum(z**2)), sum_z2_p=float(scipy.stats.chi2.sf(np.sum(z**2), len(n))),
        )  # fmt: skip
    return out


def print_overall(overall: dict) -> None:
    for level, o in overall.items():
        print(
            f"{level} % intervals, all entries: {o['coverage']:.3f} of {o['intervals']} cover (target {o['target']:.3f}, "
            f"SE {o['se']:.3f} were they independent); {o['in_band']} of {o['entries']} entries within "
            f"{o['target']:.2f} ± {o['band']:.2f} (an exact method: {o['exact_in_band']:.1f}); Σ z² = {o['sum_z2']:.1f} "
            f"for {o['entries']} entries (p = {o['sum_z2_p']:.2g}, too small: the entries share skies)"
        )


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/sky_fit_coverage.py", description=__doc__)
    ap.add_argument(
        "--artifact",
        type=Path,
        required=True,
        help="emulator artifact (jaxcr campaign artifact), or a shipped one by name (icecube, icecube-wide, ...)",
    )
    ap.add_argument("--truth", type=float, nargs=2, action="append", metavar=("SIGMA2", "RHO"),
                    help="an injected (σ², r_L/λ_c); repeat for several (default 1.0 0.1 and 0.5 0.15)")  # fmt: skip
    ap.add_argument("--skies", type=int, default=24, help="single skies per truth (default 24)")
    ap.add_argument(
        "--gradient-per-pc", type=float, default=0.01, help="injected CR gradient |∇n/n| in 1/pc (default 0.01)"
    )
    ap.add_argument(
        "--b0-mug", type=float, default=3.0, help="B0 in μG (sets r_L at the observatory's energy; default 3)"
    )
    ap.add_argument(
        "--observatory", choices=sorted(OBSERVATORIES), default="icecube", help="mock observatory (default icecube)"
    )
    ap.add_argument("--sky-nside", type=int, help="nside of the synthetic skies (default twice the campaign's)")
    ap.add_argument(
        "--form",
        choices=["lognormal", "offset-lognormal", "gaussian"],
        nargs="+",
        default=["lognormal"],
        help="likelihood forms, each fitted to the same skies (default lognormal)",
    )
    ap.add_argument(
        "--gradient", choices=["known", "free"], nargs="+", default=["known", "free"],
        help="fit with the gradient known, free, or both (default both)",
    )  # fmt: skip
    add_calibrated_intervals_flag(ap)
    ap.add_argument(
        "--sky-scatter", choices=["pooled", "local"], default="pooled",
        help="one sky's covariance of ln C_ℓ in the likelihood (default pooled; on an artifact built with "
        "--sky-scatter local, calibrated intervals then draw their toys with its local covariance)",
    )  # fmt: skip
    add_tails_flags(ap)
    ap.add_argument(
        "--covariance-at-estimate", type=Path, metavar="LOCAL_ARTIFACT",
        help="refit each sky with one sky's covariance of ln C_ℓ held fixed at this artifact's local covariance "
        "(built with --sky-scatter local from the same campaign) at the first fit's estimate",
    )  # fmt: skip
    ap.add_argument(
        "--time-factor", type=float, default=1.0,
        help="make the skies at this multiple of the artifact's time at each truth (default 1)",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=4242, help="seed of the skies and their Poisson counts (default 4242)")
    ap.add_argument("--out", type=Path, default=Path("results/sky_fit_coverage"), help="output folder")
    ap.add_argument(
        "--skies-from", type=Path, help="fit the skies an earlier run saved (its --out) instead of new ones"
    )
    args = ap.parse_args(argv)
    if args.skies < 2:
        ap.error(f"--skies must be >= 2; got {args.skies}")
    if not args.time_factor > 0:
        ap.error(f"--time-factor must be > 0; got {args.time_factor}")
    check_calibrated_intervals(ap, args.calibrated_intervals)
    check_tails(ap, args.tails, args.tail_dof)
    options = fit_options(args.calibrated_intervals, seed=0)  # the toys' seed, not the skies' (--seed)
    io.check_writable("--out", args.out / "coverage.json")
    artifact = EmulatorArtifact.load(check_artifact_path(args.artifact))  # a file or a shipped name (icecube-wide)
    local = None
    if args.covariance_at_estimate is not None:
        local = EmulatorArtifact.load(check_artifact_path(args.covariance_at_estimate, "--covariance-at-estimate"))
        if local.log_emulator.point_covs is None or local.parameters != artifact.parameters:
            ap.error("--covariance-at-estimate needs an artifact built with --sky-scatter local on --artifact's box")
    observatory = OBSERVATORIES[args.observatory]
    campaign_model = artifact.campaign_model()
    sky_nside = args.sky_nside or 2 * campaign_model.nside
    model = campaign_model.replace(dt=None, nside=sky_nside)  # each truth's own default step
    r_l = float(units.larmor_radius_pc(observatory.median_energy_tev, args.b0_mug))
    amplitude = (args.gradient_per_pc * r_l) ** 2
    truths = args.truth or [[1.0, 0.1], [0.5, 0.15]]
    report = dict(
        artifact=artifact.version,
        artifact_time=artifact.time,
        settings=vars(args) | {"amplitude": amplitude},
        truths=[],
    )
    print(artifact.summary())
    for k, (s2, rho) in enumerate(truths):
        t0 = time.perf_counter()
        sky_time = artifact.time_at(dict(sigma2=s2, rho=rho)) * args.time_factor
        folder = (args.skies_from or args.out) / "skies"
        paths = [folder / f"truth{k}_sky{i:03d}.csv" for i in range(args.skies)]
        if args.skies_from is not None:
            skies = [_saved_sky(p, s2, rho, args.seed + 1000 * k, sky_nside, sky_time, amplitude) for p in paths]
        else:
            skies = mock_sky_spectra(
                dict(sigma2=s2, rho=rho), model, observatory, time=sky_time, amplitude=amplitude, n_skies=args.skies,
                seed=args.seed + 1000 * k, lmax=int(artifact.ells[-1]),
            )  # fmt: skip
            folder.mkdir(parents=True, exist_ok=True)
            for sky, p in zip(skies, paths):
                save_spectrum(sky, p)
        t_sky = time.perf_counter() - t0
        entry: dict = dict(sigma2=s2, rho=rho, sky_seconds=t_sky, forms={})
        modes = [
            m for m in (("known", dict(gradient_per_pc=args.gradient_per_pc)), ("free", {})) if m[0] in args.gradient
        ]
        for form in args.form:
            at_truth = residuals_at_truth(skies, artifact, dict(sigma2=s2, rho=rho), amplitude=amplitude, form=form)
            entry.setdefault("at_truth", {})[form] = at_truth
            if "mean_z" in at_truth:
                print(f"truth σ² = {s2}, ρ = {rho}, {form}, " + describe_residuals(at_truth))
        for form, (label, kw) in itertools.product(args.form, modes):
            result = entry["forms"].setdefault(form, {})
            fits, refused = [], []
            for sky in skies:  # a sky the likelihood cannot take (log-normal: Ĉ_ℓ ≤ N) is counted, not fitted
                try:
                    fits.append(
                        fit_one(
                            sky,
                            artifact,
                            local,
                            b0_microgauss=args.b0_mug,
                            form=form,
                            options=options,
                            sky_scatter=args.sky_scatter,
                            tails=args.tails,
                            tail_dof=args.tail_dof,
                            **kw,
                        )
                    )
                except (ValueError, RuntimeError) as err:  # RuntimeError: a fit whose −2 ln L turned non-finite
                    refused.append(f"{type(err).__name__}: " + " ".join(str(err).split())[:200])
            truth = dict(sigma2=s2, rho=rho) | ({} if kw else dict(gradient_per_pc=args.gradient_per_pc))
            result[label] = dict(
                summary=summarise(fits, truth) | dict(refused=len(refused)), fits=fits, refused=refused
            )
            print(
                f"truth σ² = {s2}, ρ = {rho}, {form}, gradient {label}: {args.skies} skies ({t_sky:.0f} s to make)"
                + (
                    f", {len(refused)} refused or failed with the {form} likelihood ({refused[0][:90]}...)"
                    if refused
                    else ""
                )
            )
            for name, row in result[label]["summary"].items():
                if isinstance(row, dict):
                    print(
                        f"  {name:16s} 68 % coverage {row['coverage_68']:.2f}, 95 % {row['coverage_95']:.2f}, "
                        f"pull {row['mean_pull']:+.2f} ± {row['pull_se']:.2f} (sd {row['pull_sd']:.2f}; "
                        f"{row['pulls_open_side']} open on the truth's side), "
                        f"median estimate {row['median_estimate']:.3g}"
                    )
            s = result[label]["summary"]
            print(
                f"  flagged {100 * s['flagged_fraction']:.0f} % of skies; poorly constrained directions "
                f"{[round(x, 2) for x in s['poorly_constrained_fraction']]}; median p = {s['median_p_value']:.2f} "
                f"(p-values against uniform: KS D = {s['p_value_ks'][0]:.2f}, p = {s['p_value_ks'][1]:.2g}); "
                f"median fit {s['median_fit_time_s']:.1f} s"
            )
        report["truths"].append(entry)
    report["overall"] = coverage_overall(report)
    print_overall(report["overall"])
    io.write_json(args.out / "coverage.json", report)
    figure = plot_p_values(report, args.out / "p_values.png")
    print(f"wrote {args.out / 'coverage.json'} and {figure}")
    return 0


def plot_p_values(report: dict, path: Path) -> Path:
    """Histogram of the fits' χ² p-values, per likelihood form and gradient mode, all truths
    together: a right likelihood gives a flat histogram (the dashed line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxcr.plot import save_figure

    cells = sorted({(form, mode) for t in report["truths"] for form, m in t["forms"].items() for mode in m})
    fig, axes = plt.subplots(1, len(cells), figsize=(3.2 * len(cells), 2.8), squeeze=False)
    for ax, (form, mode) in zip(axes[0], cells):
        p = np.concatenate([t["forms"][form][mode]["summary"]["p_values"] for t in report["truths"]])
        ax.hist(p, bins=10, range=(0, 1), color="C0", alpha=0.8)
        ax.axhline(len(p) / 10, color="k", ls="--", lw=1)
        ax.set(title=f"{form}, gradient {mode}", xlabel="χ² p-value", ylabel="fits")
    fig.suptitle(f"artifact {report['artifact']}: {len(report['truths'])} truths", fontsize=9)
    return save_figure(fig, path)


def fit_one(sky: ObservedSpectrum, artifact: EmulatorArtifact, local: EmulatorArtifact | None, **kw) -> dict:
    """One sky's fit on ``artifact`` (``kw``: :func:`jaxcr.inference.sky_fit.fit_sky`'s options); with a
    ``local`` artifact, fitted again with the covariance held at its local one at that estimate."""
    fit = fit_sky(sky, artifact, progress=False, **kw)
    if local is not None:
        fit = fit_sky(sky, covariance_held_at(artifact, local, fit.parameters), progress=False, **kw)
    return fit.as_dict()


def covariance_held_at(artifact: EmulatorArtifact, local: EmulatorArtifact, values: dict) -> EmulatorArtifact:
    """``artifact`` with one sky's covariance of ln C_ℓ replaced by ``local``'s local covariance at
    the named ``values``, the same at every θ (pooled form): the likelihood then takes no
    information from how the covariance changes with θ."""
    theta = local.parameters.coordinates({n: values[n] for n in local.parameters.names})
    held = np.asarray(local.log_emulator.sky_log_covariance(np.asarray(theta)))
    return dataclasses.replace(artifact, log_emulator=eqx.tree_at(lambda e: e.rel, artifact.log_emulator, held))


def _saved_sky(path: Path, sigma2, rho, seed, nside, sky_time, amplitude) -> ObservedSpectrum:
    """A sky saved by an earlier run, refused unless its file records the same truth and settings."""
    if not path.exists():
        raise SystemExit(f"--skies-from: {path} does not exist; run once without --skies-from to make the skies")
    sky = load_spectrum(path)
    wanted = (f"seed {seed}:", f"'sigma2': {float(sigma2)!r}", f"'rho': {float(rho)!r}", f"ΩT={sky_time:g}",
              f"a={amplitude:g}", f"nside {nside},")  # fmt: skip
    missing = [w for w in wanted if w not in sky.source]
    if missing:
        raise SystemExit(
            f"--skies-from: {path} was made with other settings (its source lacks {missing}): {sky.source}"
        )
    return sky


if __name__ == "__main__":
    sys.exit(run_command("python experiments/sky_fit_coverage.py", main))
