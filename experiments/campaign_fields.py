"""Single skies against the campaign at one design point: the same fields through both paths, then more fields.

    python experiments/campaign_fields.py --artifact icecube-wide --point 6 0.01 [--fresh 48] [--seed 31337]
        [--gradient-per-pc 0.01] [--b0-mug 3] [--nside N] [--out results/campaign_fields]

At the design point (σ², r_L/λ_c) of the artifact's campaign it backtracks two sets of fields to
the artifact's ΩT there: the campaign's own N_B realisations (its seed, stream 1 + k for design
point k) and --fresh new ones (--seed, stream 0), each observed as a mock sky by the artifact's
observatory (jaxcr.synthetic.mock_skies, the coverage script's skies; --gradient-per-pc and --b0-mug
set the amplitude a = (|∇n/n| r_L)²). For every field it has both paths: the campaign's
(the analysis' spectrum of the unit-gradient map less its pixel noise N̂ t_ℓ, what the artifact
emulates) and the observed sky's (Ĉ_ℓ less its isotropic band, divided by a). It reports:

* per field, the mean over ℓ of ln(observed/campaign): 0 up to shot noise where the two paths agree;
* per set, the deconvolved ⟨ln S_ℓ⟩ (jaxcr.inference.pixel_noise, as the artifact's moments) less
  the emulated ⟨ln C_ℓ⟩ at the point, with its standard error (the set's SD/√n): a single-sky
  population off the campaign's shows here;
* per set, the deconvolved SD of ln S_ℓ against the SD of one sky in the artifact's likelihood
  (the pooled covariance plus the emulator's error there);
* the fields the log-normal likelihood refuses (some Ĉ_ℓ − N ≤ 0 at the artifact's ℓ), and the
  deconvolved ⟨ln S_ℓ⟩ of the others: what the fits of the accepted skies see.

--nside overrides the campaign's (the fields are then not the campaign's own maps, but the two
paths still see the same maps). The observed skies have their mean removed, as mock_skies does;
for a time-scrambling analysis (IceCube's, HAWC's) it drops out with the ring means. Writes fields.json (settings, seeds, versions, every number
printed) and fields.png. About 12 s per field at nside 32 at (6, 0.01) on 2 cores.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np

from jaxcr import io, units
from jaxcr.inference.artifact import EmulatorArtifact
from jaxcr.inference.campaign import software_versions
from jaxcr.inference.campaign_spec import CampaignSpec
from jaxcr.inference.pixel_noise import deconvolved_log_moments
from jaxcr.inference.shipped import check_artifact_path
from jaxcr.observations import OBSERVATORIES
from jaxcr.recipes.command import CommandParser, run_command
from jaxcr.synthetic import mock_skies


def field_set(artifact, model, observatory, values, *, time_, amplitude, seed, stream, n) -> dict:
    """Both paths' spectra of ``n`` fields (keys of ``seed``, ``stream``) at the artifact's ℓ."""
    ells = np.asarray(artifact.ells)
    skies = mock_skies(values, model, observatory, time=time_, amplitude=amplitude, n_skies=n, seed=seed,
                       stream=stream, lmax=int(ells[-1]), n_resamples=4)  # fmt: skip
    unit_maps = np.stack([s.relative_intensity for s in skies]) / np.sqrt(amplitude)
    pixel_noise = np.array([s.pixel_noise for s in skies]) / amplitude
    t_ell, v_ell = artifact.analysis.noise_response(model.nside)
    campaign = np.asarray(artifact.analysis.spectra(unit_maps))[:, ells] - pixel_noise[:, None] * t_ell[ells]
    observed = np.stack([(s.spectrum.cl - s.spectrum.isotropic_mean)[ells - 1] for s in skies]) / amplitude
    return dict(campaign=campaign, observed=observed, pixel_noise=pixel_noise, t_ell=t_ell[ells], v_ell=v_ell[ells])


def summarise(fields: dict, emulated, model_sd) -> dict:
    """The set's numbers (module docstring), per ℓ where a list."""
    c, noise = fields["campaign"], fields["pixel_noise"]
    mu, cov = deconvolved_log_moments(c, noise, fields["t_ell"], fields["v_ell"])
    sd = np.sqrt(np.diag(cov))
    accepted = np.all(c > 0, axis=1)
    both = (c > 0) & (fields["observed"] > 0)
    paired = np.array([np.mean(np.log(o[b] / k[b])) for o, k, b in zip(fields["observed"], c, both)])
    out = dict(
        fields=len(c),
        offset=(mu - emulated).tolist(),
        offset_se=(sd / np.sqrt(len(c))).tolist(),
        sd=sd.tolist(),
        sd_over_model=(sd / model_sd).tolist(),
        refused=int(np.sum(~accepted)),
        paired_log_ratio=paired.tolist(),
    )
    if accepted.sum() > 2:
        mu_kept, _ = deconvolved_log_moments(c[accepted], noise[accepted], fields["t_ell"], fields["v_ell"])
        out["offset_accepted"] = (mu_kept - emulated).tolist()
    return out


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/campaign_fields.py", description=__doc__)
    ap.add_argument("--artifact", type=Path, required=True, help="emulator artifact (a file or a shipped name)")
    ap.add_argument("--point", type=float, nargs=2, required=True, metavar=("SIGMA2", "RHO"),
                    help="a design point of the artifact's campaign (to 0.5 %%; a wrong one lists them)")  # fmt: skip
    ap.add_argument("--fresh", type=int, default=48, help="new fields besides the campaign's (default 48)")
    ap.add_argument("--seed", type=int, default=31337, help="seed of the new fields (default 31337)")
    ap.add_argument("--gradient-per-pc", type=float, default=0.01, help="|∇n/n| in 1/pc (default 0.01)")
    ap.add_argument("--b0-mug", type=float, default=3.0, help="B0 in μG (r_L at the observatory's energy; default 3)")
    ap.add_argument("--nside", type=int, help="backtrack at this nside instead of the campaign's")
    ap.add_argument("--out", type=Path, default=Path("results/campaign_fields"), help="output folder")
    args = ap.parse_args(argv)
    if args.fresh < 3:
        ap.error(f"--fresh must be >= 3 (a scatter needs fields); got {args.fresh}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0; got {args.seed}")
    for name in ("gradient_per_pc", "b0_mug"):
        if not getattr(args, name) > 0:
            ap.error(f"--{name.replace('_', '-')} must be > 0; got {getattr(args, name)}")
    io.check_writable("--out", args.out / "fields.json")
    artifact = EmulatorArtifact.load(check_artifact_path(args.artifact))
    spec = CampaignSpec.from_dict(artifact.provenance["campaign"])
    theta = spec.parameters.coordinates(dict(sigma2=args.point[0], rho=args.point[1]))
    k, distance = spec.nearest_point(dict(sigma2=args.point[0], rho=args.point[1]))
    if distance > 5e-3:  # the values as printed (4 digits) name the point
        points = ", ".join(f"({v['sigma2']:.4g}, {v['rho']:.4g})" for v in map(spec.values, range(len(spec.design))))
        ap.error(f"--point {args.point[0]:g} {args.point[1]:g} is not a design point of the campaign: {points}")
    values = {name: float(v) for name, v in spec.values(k).items()}
    model = spec.model_at(k)
    model = model if args.nside is None else model.replace(nside=args.nside)
    observatory = next(o for o in OBSERVATORIES.values() if not o.analysis.mismatch(artifact.analysis))
    r_l = float(units.larmor_radius_pc(observatory.median_energy_tev, args.b0_mug))
    amplitude = (args.gradient_per_pc * r_l) ** 2
    time_ = artifact.time_at(values)
    emulated = np.asarray(artifact.log_emulator.log_mean(theta))
    model_sd = np.sqrt(np.diag(np.asarray(artifact.log_emulator.log_covariance(theta, 1))))
    print(
        f"{artifact.summary()}\ndesign point {k}: {values}, ΩT = {time_:.6g}, nside {model.nside}, a = {amplitude:.3g}"
    )
    sets = {
        "campaign": dict(seed=spec.model.seed, stream=1 + k, n=spec.model.n_realisations),
        "fresh": dict(seed=args.seed, stream=0, n=args.fresh),
    }
    report = dict(artifact=artifact.version, point=values, design_index=k, time=time_, nside=model.nside,
                  amplitude=amplitude, ells=np.asarray(artifact.ells).tolist(), emulated=emulated.tolist(),
                  model_sd=model_sd.tolist(), settings=vars(args), sets={}, versions=software_versions())  # fmt: skip
    for name, s in sets.items():
        t0 = time.perf_counter()
        fields = field_set(artifact, model, observatory, values, time_=time_, amplitude=amplitude, **s)
        row = summarise(fields, emulated, model_sd) | s | dict(seconds=time.perf_counter() - t0)
        report["sets"][name] = row
        print(f"{name}: {row['fields']} fields (seed {s['seed']}, stream {s['stream']}), {row['seconds']:.0f} s")
        print(
            f"  ⟨ln S⟩ − emulated per ℓ: {_fmt(row['offset'])} (SE {min(row['offset_se']):.2f}-{max(row['offset_se']):.2f})"
        )
        print(f"  SD of ln S per ℓ: {_fmt(row['sd'])}; over the likelihood's SD: {_fmt(row['sd_over_model'])}")
        paired = np.abs(row["paired_log_ratio"])
        print(f"  per field |⟨ln observed/campaign⟩|: median {np.median(paired):.3f}, largest {paired.max():.3f}")
        if "offset_accepted" in row:
            print(f"  {row['refused']} refused by the log-normal form; the others' ⟨ln S⟩ − emulated: "
                  f"{_fmt(row['offset_accepted'])}")  # fmt: skip
    io.write_json(args.out / "fields.json", report)
    figure = plot_sets(report, args.out / "fields.png")
    print(f"wrote {args.out / 'fields.json'} and {figure}")
    return 0


def _fmt(values) -> str:
    return " ".join(f"{v:+.2f}" for v in values)


def plot_sets(report: dict, path: Path) -> Path:
    """Per ℓ: each set's ⟨ln S⟩ − emulated with its SE, and its SD of ln S against the likelihood's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxcr.plot import save_figure

    ell = np.asarray(report["ells"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.5, 3.2))
    for i, (name, row) in enumerate(report["sets"].items()):
        shift = (i - 0.5) * 0.15
        left.errorbar(
            ell + shift, row["offset"], yerr=row["offset_se"], fmt="o", ms=3, label=f"{name} ({row['fields']})"
        )
        right.plot(ell, row["sd"], "o-", ms=3, label=name)
    left.axhline(0, color="k", lw=0.8)
    left.set(xlabel="ℓ", ylabel="⟨ln S_ℓ⟩ − emulated ⟨ln C_ℓ⟩ (e-folds)")
    right.plot(ell, report["model_sd"], "k--", label="likelihood (one sky)")
    right.set(xlabel="ℓ", ylabel="SD of ln S_ℓ (e-folds)")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    v = report["point"]
    fig.suptitle(f"artifact {report['artifact']}, design point σ² = {v['sigma2']:.3g}, r_L/λ_c = {v['rho']:.3g}",
                 fontsize=9)  # fmt: skip
    return save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(run_command("python experiments/campaign_fields.py", main))
