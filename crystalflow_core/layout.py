"""Every path of the results folder, defined once. The Snakemake rules, the CLI and the tests all
take their paths from here; arguments may be Snakemake wildcards ("{run}") as well as values."""

from __future__ import annotations

import re
from dataclasses import dataclass

from crystalflow_core.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def check_name(name, where: str) -> str:
    """A name that becomes a folder or file under results/ (a run, a prediction job, a dataset, a split):
    letters, digits, `_`, `-` and `.`, not `.` or `..`; anything else is refused in one line naming `where`."""
    text = str(name) if name is not None else ""
    if not _NAME.fullmatch(text) or text in (".", ".."):
        raise ConfigError(
            f"{where}: {text!r} cannot name a folder under results/: use letters, digits, '_', '-' and '.' "
            "(no '/', no '..', not empty)"
        )
    return text


@dataclass(frozen=True)
class Layout:
    root: str = "results"

    # data
    def split(self, dataset, split) -> str:
        return f"{self.root}/data/{dataset}/{split}.pt"

    def rejected(self, dataset, split) -> str:
        return f"{self.root}/data/{dataset}/{split}_rejected.csv"

    def fingerprints(self, dataset, split, limit) -> str:
        """CrystalNN/Magpie fingerprints of a split; `limit` an int, None (all) or a wildcard."""
        return f"{self.root}/data/{dataset}/{split}_fingerprints2_{'all' if limit is None else limit}.npz"

    # training
    def run_dir(self, run) -> str:
        return f"{self.root}/runs/{run}"

    def model(self, run) -> str:
        return f"{self.run_dir(run)}/model.ckpt"

    def lightning(self, run) -> str:
        """Resumable Lightning checkpoints (last.ckpt, best-epoch*.ckpt) and the CSV training log."""
        return f"{self.run_dir(run)}/lightning"

    # sampling and what follows, per sampling point (s10, sheun_10) or DNG baseline (srandom)
    def point_dir(self, run, point) -> str:
        return f"{self.run_dir(run)}/s{point}"

    def sample_shard(self, run, point, shard) -> str:
        return f"{self.point_dir(run, point)}/samples/shard{shard}.jsonl"

    def samples(self, run, point) -> str:
        return f"{self.point_dir(run, point)}/samples.jsonl"

    def sample_export(self, run, point) -> str:
        """The gathered samples as CIFs (cif/) and one extxyz, where the run's `sample.export` asks."""
        return f"{self.point_dir(run, point)}/export"

    def relaxed(self, run, point, shard) -> str:
        return f"{self.point_dir(run, point)}/relax/shard{shard}.jsonl"

    def stability(self, run, point) -> str:
        return f"{self.point_dir(run, point)}/stability.csv"

    def stability_second_opinion(self, run, point) -> str:
        """The committee's second potential on every relaxed structure of a DNG point (`relax.committee`), kept
        across reruns under a key of each structure and the settings."""
        return f"{self.point_dir(run, point)}/stability_second_opinion.jsonl"

    def metrics(self, run, point) -> str:
        return f"{self.point_dir(run, point)}/metrics.csv"

    def condition_metrics(self, run, point) -> str:
        """Per-condition-value rows of a conditional DNG run (MAE/RMSE before and after relaxation)."""
        return f"{self.point_dir(run, point)}/metrics_conditions.csv"

    def transport_dir(self, run, point) -> str:
        """Migration-graph screen, MD shards and trajectories (extxyz) of the ion-transport stage."""
        return f"{self.point_dir(run, point)}/transport"

    def transport_screen(self, run, point) -> str:
        return f"{self.transport_dir(run, point)}/screen.csv"

    def transport_md(self, run, point, shard) -> str:
        return f"{self.transport_dir(run, point)}/md_shard{shard}.jsonl"

    def trajectories(self, run, point, shard) -> str:
        """The MD trajectories (extxyz) of one MD shard."""
        return f"{self.transport_dir(run, point)}/trajectories/shard{shard}"

    def transport(self, run, point) -> str:
        return f"{self.point_dir(run, point)}/transport.csv"

    def vasp_dir(self, run, point) -> str:
        return f"{self.point_dir(run, point)}/vasp"

    def vasp_manifest(self, run, point) -> str:
        return f"{self.vasp_dir(run, point)}/manifest.csv"

    def dft_stability(self, run, point) -> str:
        """DFT results read back (VASP folders or supplied energies) beside the CHGNet stability."""
        return f"{self.point_dir(run, point)}/dft_stability.csv"

    # structure prediction for your own compositions (a `predict` job)
    def predict_dir(self, job) -> str:
        return f"{self.root}/predict/{job}"

    def predict_samples(self, job, shard) -> str:
        return f"{self.predict_dir(job)}/samples/shard{shard}.jsonl"

    def predict_relaxed(self, job, shard) -> str:
        return f"{self.predict_dir(job)}/relax/shard{shard}.jsonl"

    def predict_search_samples(self, job) -> str:
        """The candidates of a job with a stopping rule (`until`), sampled in rounds."""
        return f"{self.predict_dir(job)}/search/samples.jsonl"

    def predict_search_relaxed(self, job) -> str:
        return f"{self.predict_dir(job)}/search/relax.jsonl"

    def predict_candidates(self, job) -> str:
        """Every candidate: energies and enthalpies before/after relaxation, stress, space groups, cluster."""
        return f"{self.predict_dir(job)}/candidates.csv"

    def predict_ranked(self, job) -> str:
        """Distinct polymorphs ranked by enthalpy per composition and pressure."""
        return f"{self.predict_dir(job)}/ranked.csv"

    def predict_refined(self, job) -> str:
        """The tight re-relaxations of the ranking's best polymorphs (`rank.refine_*`), each under a key of its
        starting structure and settings: kept across reruns, so re-ranking (rank.by, top_n) refines nothing again."""
        return f"{self.predict_dir(job)}/refined.jsonl"

    def predict_second_opinion(self, job) -> str:
        """The committee's second potential on the ranking's top polymorphs (`relax.committee`), each under a key
        of its structure, pressure and settings: kept across reruns, as the refinements are."""
        return f"{self.predict_dir(job)}/second_opinion.jsonl"

    def predict_cifs(self, job) -> str:
        return f"{self.predict_dir(job)}/cif"

    def predict_phase_diagram(self, job) -> str:
        """H(P) of every polymorph at every pressure of a scan (empty for one pressure)."""
        return f"{self.predict_dir(job)}/phase_diagram.csv"

    def predict_extxyz(self, job) -> str:
        return f"{self.predict_dir(job)}/relaxed.extxyz"

    def predict_plots(self, job) -> str:
        """The pictures of the job's report section."""
        return f"{self.predict_dir(job)}/plots"

    def predict_vasp_manifest(self, job) -> str:
        return f"{self.predict_dir(job)}/vasp/manifest.csv"

    def predict_dft(self, job) -> str:
        return f"{self.predict_dir(job)}/dft.csv"

    def predict_report(self, job) -> str:
        """The job's report section (markdown) beside its pictures."""
        return f"{self.predict_dir(job)}/report.md"

    # tables and report
    def table(self, tag, task) -> str:
        return f"{self.root}/{tag}_{task}_metrics.csv"

    def conditions_table(self, tag) -> str:
        return f"{self.root}/{tag}_dng_conditions.csv"

    def paper_table(self, name) -> str:
        return f"{self.root}/tables/{name}.md"

    def plots(self) -> str:
        return f"{self.root}/plots"

    def report(self) -> str:
        return f"{self.root}/report.md"

    def log(self, stage, name) -> str:
        return f"{self.root}/logs/{stage}/{name}.log"

    def benchmark(self, stage, name) -> str:
        return f"{self.root}/benchmarks/{stage}/{name}.tsv"

    @staticmethod
    def run_label(path) -> str:
        """'{root}/runs/NAME/s50/transport.csv' -> 'NAME s50': the run and sampling point of a per-point file
        ('NAME random baseline' for a DNG run's baseline)."""
        from pathlib import Path

        from crystalflow_core.points import is_baseline

        p = Path(path)
        run, point = p.parent.parent.name, p.parent.name[1:]
        return f"{run} {point} baseline" if is_baseline(point) else f"{run} {p.parent.name}"

    def downloads(self) -> str:
        return f"{self.root}/downloads"
