"""Staged sweep for a preset ("lecture" or "quick"): where does a KD student beat its hard-label twin, over seeds?

--preset picks the teacher (and with it the dataset), the stages and the setting they start from, the target, the
time limit and the cache file. bench/SWEEP_LECTURE.md and bench/SWEEP_QUICK.md are the two sweeps' write-ups.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from kdviz.core.engine import DistillConfig, EpochEnd, Finished, TeacherConfig, distill
from kdviz.core.models import ModelSpec
from kdviz.core.presets import DEFAULT_TEACHER, get_preset
from kdviz.core.teachers import get_teacher, teacher_key

TARGET_WIN_SHARE = 0.9  # KD must win on at least 90% of the seeds (and cut the errors by the preset's target)
NOISE = 0.01  # relative error reductions closer than this to the best are a tie


@dataclass(frozen=True)
class Setting:
    """The student side of one experiment; the teacher is the preset's (the defaults are the lecture's reference)."""

    width: int = 800
    depth: int = 2
    train_subset: int = 500  # 0 or 4000: the whole training set
    epochs: int = 40
    temperature: float = 20.0
    alpha: float = 1.0
    augment: int = 0
    batch_size: int = 128
    learning_rate: float = 1e-3

    def config(self, preset: "Preset", seed: int) -> DistillConfig:
        return DistillConfig(preset.teacher, ModelSpec("mlp", self.width, self.depth), temperature=self.temperature,
                             alpha=self.alpha, epochs=self.epochs, batch_size=self.batch_size,
                             learning_rate=self.learning_rate, augment=self.augment,
                             train_subset=self.train_subset, seed=seed, device="cpu")

    def describe(self, preset: "Preset") -> str:
        n_train = preset.train_images
        data = f"all {n_train}" if self.train_subset in (0, n_train) else str(self.train_subset)
        text = (f"mlp {self.width}x{self.depth}, n={data}, T={self.temperature:g}, α={self.alpha:g}, "
                f"{self.epochs} ep")
        if self.augment:
            text += f", jitter ±{self.augment}"
        if self.batch_size != preset.usual_batch_size:
            text += f", bs {self.batch_size}"
        if self.learning_rate != preset.usual_learning_rate:
            text += f", lr {self.learning_rate:g}"
        if not preset.is_smaller_than_teacher(self):
            text += " (teacher-sized: not eligible)"
        return text

    def steps(self, preset: "Preset") -> int:
        return self.epochs * math.ceil((self.train_subset or preset.train_images) / self.batch_size)

    def estimated_seconds(self, preset: "Preset") -> float:
        """Seconds for one seed on one thread, from the multiply-accumulates of both students' forward and backward
        passes (3 passes) on the training images, their test evaluation every epoch and the teacher's forward passes
        (once when unaugmented, on every batch when augmented), plus a fixed cost per optimiser step (the Python
        and framework overhead of two students' steps; it dominates for small networks on small images)."""
        student = preset.mlp_params(self.width, self.depth)
        teacher = preset.mlp_params(preset.teacher.model.width, preset.teacher.model.depth)
        n = self.train_subset or preset.train_images
        per_epoch = 2 * (3 * n + preset.test_images) * student + (n * teacher if self.augment else 0)
        return (preset.seconds_per_mac * (self.epochs * per_epoch + (0 if self.augment else n * teacher))
                + preset.seconds_per_step * self.steps(preset))

    def curve_key(self, seed: int, extra: dict | None = None) -> str:
        """All but the epochs: with no learning-rate schedule, epoch e of a longer run is exactly an e-epoch run.

        extra (the preset's key_extra) tells presets apart; the lecture's is empty, which keeps its cache valid.
        """
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "epochs"}
        return json.dumps({**fields, **(extra or {}), "seed": seed}, sort_keys=True)


# ---- running, with a cache of per-epoch accuracy curves ------------------------------------------------------------

class Runner:
    """Runs (setting, seed) pairs through kdviz's engine and caches each run's test-accuracy curve on disk."""

    def __init__(self, preset: "Preset", cache_path: Path, seeds: list[int]):
        self.preset, self.cache_path, self.seeds = preset, cache_path, seeds
        self.curves = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
        self._teacher = None

    def teacher(self):
        if self._teacher is None:
            self._teacher, summary = get_teacher(self.preset.teacher, device="cpu")
            log(f"teacher: {summary['teacher']['accuracy']:.2%} test accuracy")
        return self._teacher

    def curve(self, setting: Setting, seed: int) -> dict:
        key = setting.curve_key(seed, self.preset.key_extra)
        cached = self.curves.get(key)
        if cached is not None and cached["epochs"] >= setting.epochs:
            return cached
        started = time.perf_counter()
        hard, kd, status = [], [], None
        for event in distill(setting.config(self.preset, seed), self.teacher()):
            if isinstance(event, EpochEnd):
                hard.append(event.accuracy["hard"])
                kd.append(event.accuracy["kd"])
            elif isinstance(event, Finished):
                status = event.status
        if status != "completed":
            raise RuntimeError(f"{setting.describe(self.preset)} seed {seed}: the run ended {status}")
        curve = {"epochs": setting.epochs, "hard": hard, "kd": kd, "seconds": time.perf_counter() - started}
        self.curves[key] = curve
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        self.cache_path.write_text(json.dumps(self.curves))
        return curve

    def row(self, stage: str, setting: Setting) -> dict:
        """Mean ± std over the seeds, errors out of the test images, KD wins (strictly fewer errors)."""
        started = time.perf_counter()
        curves = [self.curve(setting, seed) for seed in self.seeds]
        hard = [c["hard"][setting.epochs] for c in curves]
        kd = [c["kd"][setting.epochs] for c in curves]
        n_test = self.preset.test_images
        hard_errors = [round((1 - a) * n_test) for a in hard]
        kd_errors = [round((1 - a) * n_test) for a in kd]
        mean_hard_err, mean_kd_err = statistics.mean(hard_errors), statistics.mean(kd_errors)
        row = {
            "stage": stage, "config": setting.describe(self.preset), "setting": dataclasses.asdict(setting),
            "seeds": self.seeds, "hard_accuracy": hard, "kd_accuracy": kd,
            "hard_errors": hard_errors, "kd_errors": kd_errors,
            "hard_mean": statistics.mean(hard), "hard_std": _std(hard),
            "kd_mean": statistics.mean(kd), "kd_std": _std(kd),
            "hard_errors_mean": mean_hard_err, "kd_errors_mean": mean_kd_err,
            "relative_error_reduction": (mean_hard_err - mean_kd_err) / mean_hard_err,
            "kd_wins": sum(k < h for h, k in zip(hard_errors, kd_errors)),
            "seconds_per_seed": setting.estimated_seconds(self.preset),
            # as measured on a shared machine; a checkpoint of a longer run is charged its share
            "measured_seconds_per_seed": statistics.mean(c["seconds"] * setting.epochs / c["epochs"] for c in curves),
        }
        log(f"[{stage}] {row['config']}: {format_row(row)}  ({time.perf_counter() - started:.0f} s)")
        return row


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


# ---- choosing the best setting -------------------------------------------------------------------------------------

def meets_target(row: dict, preset: "Preset") -> bool:
    return (row["kd_wins"] >= math.ceil(TARGET_WIN_SHARE * len(row["seeds"]))
            and row["relative_error_reduction"] >= preset.target_reduction)


def best(rows: list[dict], preset: "Preset") -> dict:
    """Those that meet the target first, then the largest relative error reduction (slow settings are never run).

    Only students smaller than the teacher are eligible (distillation compresses; teacher-sized students are run for
    comparison only). Reductions within NOISE of the largest count as a tie (a 10-seed mean moves about that much),
    and the tie goes to the quickest setting: a lecture preset should not be slower than it needs to be.
    """
    def meets(r):
        return meets_target(r, preset)

    def rank(r):
        return meets(r), r["relative_error_reduction"]

    rows = [r for r in rows if preset.is_smaller_than_teacher(Setting(**r["setting"]))] or rows
    top = max(rows, key=rank)
    tied = [r for r in rows if meets(r) == meets(top)
            and r["relative_error_reduction"] >= top["relative_error_reduction"] - NOISE]
    return min(tied, key=lambda r: (r["seconds_per_seed"], -r["relative_error_reduction"], -r["kd_wins"]))


def center_of(rows: list[dict], preset: "Preset") -> Setting:
    return Setting(**best(rows, preset)["setting"])


# ---- the lecture's stages: each varies one or two dimensions around the best setting so far ------------------------

REFERENCE = Setting()  # Hinton 2015 §6 in miniature: 800x2 student, 500 images, T=20, α=1, 40 epochs


def stage_baseline(center: Setting) -> list[Setting]:
    """The obvious settings (small students, all data, T=4, α=0.9, 20 epochs) and the known winning regime."""
    obvious = Setting(train_subset=4000, epochs=20, temperature=4.0, alpha=0.9)
    return [dataclasses.replace(obvious, width=30), dataclasses.replace(obvious, width=100), REFERENCE]


def stage_size(center: Setting) -> list[Setting]:
    """Student width × amount of training data (× epochs, read off the same runs' accuracy curves)."""
    settings = []
    for width in (100, 300, 800):
        for n, epochs in ((250, (20, 40, 60)), (500, (20, 40, 60)), (1000, (20, 40)), (2000, (20,)), (4000, (20,))):
            settings += [dataclasses.replace(center, width=width, train_subset=n, epochs=e) for e in epochs]
    return settings


def stage_temperature(center: Setting) -> list[Setting]:
    return [dataclasses.replace(center, temperature=t) for t in (2.0, 4.0, 8.0, 20.0)]


def stage_alpha(center: Setting) -> list[Setting]:
    return [dataclasses.replace(center, alpha=a) for a in (0.5, 0.9, 1.0)]


def stage_augment(center: Setting) -> list[Setting]:
    """Jittered student batches; the teacher then labels each augmented batch afresh."""
    return [dataclasses.replace(center, augment=a) for a in (0, 1, 2)]


def stage_optimiser(center: Setting) -> list[Setting]:
    return [center, dataclasses.replace(center, batch_size=64)] + [
        dataclasses.replace(center, learning_rate=lr) for lr in (5e-4, 2e-3)]


def stage_epochs(center: Setting) -> list[Setting]:
    return [dataclasses.replace(center, epochs=e) for e in (20, 30, 40, 50, 60)]


STAGES = {"baseline": stage_baseline, "size": stage_size, "temperature": stage_temperature, "alpha": stage_alpha,
          "augment": stage_augment, "epochs": stage_epochs, "optimiser": stage_optimiser}


# ---- the quick preset's stages (digits 8×8; bench/SWEEP_QUICK.md) ---------------------------------------------------

# The quick preset as it was before its sweep: KD lost (about 89 % hard → 85 % KD).
QUICK_REFERENCE = Setting(width=16, depth=1, train_subset=300, epochs=20, temperature=4.0, alpha=0.7, batch_size=64,
                          learning_rate=3e-3)


def quick_stage_baseline(center: Setting) -> list[Setting]:
    """The old preset, the obvious settings (a small student on all the data, T=4, α=0.9, 20 epochs) and the
    lecture's winning regime carried over (a capable student, half the teacher's width, on little data, T=20, α=1,
    40 epochs)."""
    obvious = dataclasses.replace(QUICK_REFERENCE, width=64, train_subset=0, temperature=4.0, alpha=0.9)
    lecture_like = dataclasses.replace(QUICK_REFERENCE, width=128, depth=2, train_subset=300, temperature=20.0,
                                       alpha=1.0, epochs=40)
    return [QUICK_REFERENCE, obvious, lecture_like]


def quick_stage_size(center: Setting) -> list[Setting]:
    """Student width × depth × training images (0: all 1438) × epochs (read off the same runs' curves). 256x2 is the
    teacher's own size: run for comparison (self-distillation), never chosen."""
    return [dataclasses.replace(center, width=width, depth=depth, train_subset=n, epochs=epochs)
            for depth in (1, 2) for width in (32, 64, 128, 256) for n in (100, 200, 300, 600, 0)
            for epochs in (20, 40, 60)]


def quick_stage_optimiser(center: Setting) -> list[Setting]:
    """Batch size {32, 64} × Adam's learning rate {1e-3, 3e-3}."""
    return [dataclasses.replace(center, batch_size=b, learning_rate=lr) for b in (32, 64) for lr in (1e-3, 3e-3)]


QUICK_STAGES = {"baseline": quick_stage_baseline, "size": quick_stage_size, "temperature": stage_temperature,
                "alpha": stage_alpha, "optimiser": quick_stage_optimiser, "epochs": stage_epochs}


# ---- presets -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Preset:
    """What --preset picks: the teacher (and with it the dataset), the stages and their first centre, the target, the
    time limit and the time model, and the cache file."""

    name: str
    teacher: TeacherConfig
    inputs: int  # pixels per image: the MLP's input width
    classes: int
    train_images: int
    test_images: int
    reference: Setting  # the first stage's centre
    stages: dict[str, Callable[[Setting], list[Setting]]]
    target_reduction: float  # KD must cut the mean number of test errors by at least this much
    max_seconds_per_seed: float  # estimated, one thread: settings slower than this are never run
    seconds_per_mac: float
    seconds_per_step: float
    usual_batch_size: int  # describe() names the batch size and learning rate only when they differ from these
    usual_learning_rate: float
    # added to every cache key; empty for the lecture, whose cache (written before presets existed) stays valid
    key_extra: dict = field(default_factory=dict)

    def mlp_params(self, width: int, depth: int) -> int:
        return (self.inputs * width + width + (depth - 1) * (width * width + width) + width * self.classes
                + self.classes)

    def is_smaller_than_teacher(self, setting: Setting) -> bool:
        return (self.mlp_params(setting.width, setting.depth)
                < self.mlp_params(self.teacher.model.width, self.teacher.model.depth))

    @property
    def cache_name(self) -> str:
        return f"sweep-{self.name}-cache.json"


LECTURE = Preset(
    "lecture", DEFAULT_TEACHER, inputs=784, classes=10, train_images=4000, test_images=1000, reference=REFERENCE,
    stages=STAGES, target_reduction=0.25,
    max_seconds_per_seed=15.0,  # a preset must stay quick enough for a live lecture (one thread here; two is faster)
    # Seconds per multiply-accumulate on one thread of this 2-core machine, unloaded: 800x2 on 500 images for 40 epochs
    # took 6.6 s (255 G MACs). Timings measured while others share the machine are too noisy to choose by, so the
    # sweep estimates each setting's time from its arithmetic instead (the measured seconds are kept in the JSON).
    seconds_per_mac=6.6 / 255e9, seconds_per_step=0.0, usual_batch_size=128, usual_learning_rate=1e-3)

_QUICK_TEACHER = get_preset("quick").teacher  # digits, mlp 256x2, 30 epochs, batch 64: the preset's own teacher
QUICK = Preset(
    "quick", _QUICK_TEACHER, inputs=64, classes=10, train_images=1438, test_images=359, reference=QUICK_REFERENCE,
    stages=QUICK_STAGES, target_reduction=0.20,
    max_seconds_per_seed=3.0,  # "seconds on a laptop": one seed, both students, teacher cached
    # Fitted on one thread of this 2-core machine (32x1 … 256x2, 100 … 1438 images, batch 32 and 64): about 1 ms per
    # step of the two students (Python and framework overhead, which dominates on 8×8 images) plus 3.6e-11 s per
    # multiply-accumulate (256x2, 300 images, 40 epochs: 0.21 + 0.31 s estimated, 0.51 s measured).
    seconds_per_mac=3.6e-11, seconds_per_step=1.0e-3, usual_batch_size=64, usual_learning_rate=3e-3,
    key_extra={"preset": "quick", "teacher": teacher_key(_QUICK_TEACHER)})

PRESETS = {"lecture": LECTURE, "quick": QUICK}


def run_stages(runner: Runner, last: str) -> list[dict]:
    """Run the stages in order up to `last` (cached runs cost nothing), each centred on the best row so far."""
    preset = runner.preset
    rows: list[dict] = []
    for name, stage in preset.stages.items():
        center = center_of(rows, preset) if rows else preset.reference
        log(f"== stage {name}, centred on: {center.describe(preset)}")
        settings = []
        for setting in dict.fromkeys(stage(center)):
            if setting.estimated_seconds(preset) <= preset.max_seconds_per_seed:
                settings.append(setting)
            else:
                log(f"skipped (about {setting.estimated_seconds(preset):.1f} s per seed): {setting.describe(preset)}")
        # longest runs first: the shorter settings of the same curve are then read from the cache
        for setting in sorted(settings, key=lambda s: -s.epochs):
            for seed in runner.seeds:
                runner.curve(setting, seed)
        rows += [runner.row(name, s) for s in settings]
        if name == last:
            break
    return rows


# ---- output ----------------------------------------------------------------------------------------------------

def format_row(row: dict) -> str:
    return (f"hard {100 * row['hard_mean']:.2f} ± {100 * row['hard_std']:.2f}, "
            f"KD {100 * row['kd_mean']:.2f} ± {100 * row['kd_std']:.2f}, "
            f"errors {row['hard_errors_mean']:.1f} → {row['kd_errors_mean']:.1f}, "
            f"{100 * row['relative_error_reduction']:+.1f}%, wins {row['kd_wins']}/{len(row['seeds'])}")


def markdown_table(rows: list[dict], test_images: int = 1000) -> str:
    lines = ["| stage | config | hard acc % (mean ± std) | KD acc % (mean ± std) "
             f"| test errors /{test_images} hard → KD "
             "| relative error reduction | KD wins / seeds | est. s/seed |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['config']} | {100 * r['hard_mean']:.2f} ± {100 * r['hard_std']:.2f} "
                     f"| {100 * r['kd_mean']:.2f} ± {100 * r['kd_std']:.2f} "
                     f"| {r['hard_errors_mean']:.1f} → {r['kd_errors_mean']:.1f} "
                     f"| {100 * r['relative_error_reduction']:+.1f}% | {r['kd_wins']}/{len(r['seeds'])} "
                     f"| {r['seconds_per_seed']:.1f} |")
    return "\n".join(lines)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_seeds(text: str) -> list[int]:
    """'0-9' or '0,3,5' (or a mix: '0-4,7')."""
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += list(range(int(low), int(high) + 1)) if high else [int(low)]
    return seeds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(PRESETS), default="lecture",
                        help="which preset to sweep: its teacher, dataset, stages, target and cache (default lecture)")
    parser.add_argument("--seeds", type=parse_seeds, default=list(range(10)), help="e.g. 0-9 (default) or 0,1,2")
    stage_names = list(dict.fromkeys(name for p in PRESETS.values() for name in p.stages))
    parser.add_argument("--stage", choices=stage_names, default=None,
                        help="run the stages up to this one, each centred on the best setting of those before "
                             "(default: all; bench/SWEEP_LECTURE.md ran the lecture's up to 'epochs'). lecture: "
                             f"{', '.join(LECTURE.stages)}; quick: {', '.join(QUICK.stages)}")
    parser.add_argument("--only", action="store_true", help="print only the rows of --stage")
    parser.add_argument("--cache", type=Path, default=None,
                        help="accuracy curves of finished runs (default: $KDVIZ_HOME/sweep-<preset>-cache.json)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and the chosen setting here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    stage = args.stage or list(preset.stages)[-1]
    if stage not in preset.stages:
        parser.error(f"preset {preset.name} has no stage {stage!r}: choose one of {', '.join(preset.stages)}")

    torch.set_num_threads(args.threads)
    os.environ["KDVIZ_THREADS"] = str(args.threads)  # the engine sets the thread count of every run from this
    from kdviz.core.paths import home

    runner = Runner(preset, args.cache or home() / preset.cache_name, args.seeds)
    rows = run_stages(runner, stage)
    chosen = best(rows, preset)
    shown = [r for r in rows if r["stage"] == stage] if args.only else rows
    print(markdown_table(shown, preset.test_images))
    print(f"\nchosen: {chosen['config']}: {format_row(chosen)}, {chosen['seconds_per_seed']:.1f} s/seed "
          f"({'meets' if meets_target(chosen, preset) else 'misses'} the target: "
          f">= {TARGET_WIN_SHARE:.0%} wins and >= {preset.target_reduction:.0%} fewer errors)")
    if args.json:
        args.json.write_text(json.dumps({"preset": preset.name, "rows": rows, "chosen": chosen,
                                         "threads": args.threads, "cpu_count": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
