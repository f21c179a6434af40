"""Staged sweep for a preset ("lecture", "quick" or "fashion"), ranked on validation, with a baseline tuned as fairly.

Choose on validation, report on test:
1. experiment: where does KD help? Student width × training images (× epochs) at T = 20, α = 1, ranked by how many
   fewer *validation* errors the KD student makes than its same-settings twin. Only students smaller than the teacher
   and quick enough for a live lecture are eligible.
2. KD tuned at that experiment: temperature, α, jitter, epochs, learning rate, weight decay × dropout; each stage keeps
   the setting with the KD student's best mean validation accuracy.
3. the baseline tuned at the same experiment, the hard-label student alone, over everything that is not distillation:
   learning rate, weight decay × dropout, jitter, each at every epoch count; best mean validation accuracy.
4. report: test accuracy over the sweep's seeds and over held-out seeds the sweep never ran, for the chosen preset (KD
   and its twin) and for the tuned baseline. Test is read only here, for what was chosen.

Every run goes through kdviz's engine (same init, same batches for both students). Accuracy curves (validation and test
at every epoch) are cached on disk, so re-running the script recomputes nothing. `--jobs 2` runs two single-thread
processes side by side. sweeps/SWEEP_LECTURE.md, sweeps/SWEEP_QUICK.md and sweeps/SWEEP_FASHION.md are the write-ups.

`--preset fashion` is the same protocol on a grid cut to a CPU budget (a CNN teacher; CNN students on a few thousand
images, then MLP students on 6000 or all 54000; at most 15 epochs; 2 seeds; fashion_stages below): SWEEP_FASHION.md
says what it did not sweep.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kdviz.core.engine import DistillConfig, EpochEnd, Finished, TeacherConfig, distill
from kdviz.core.models import ModelSpec
from kdviz.core.presets import DEFAULT_TEACHER, get_preset
from kdviz.core.results import seed_summary

EXPERIMENT_TIE = 0.01  # relative error reductions this close to the best are a tie (a 10-seed mean moves that much)
ACCURACY_TIE = 0.001  # mean validation accuracies within 0.1 points are a tie; the quicker setting wins a tie


@dataclass(frozen=True)
class Setting:
    """The student side of one experiment; the teacher is the preset's."""

    width: int = 800
    depth: int = 2
    train_subset: int = 500  # 0: the whole training part
    epochs: int = 40
    temperature: float = 20.0
    alpha: float = 1.0
    augment: int = 0
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    dropout: float = 0.0
    arch: str = "mlp"  # the student's architecture (kdviz.core.models); "cnn": width channels, depth conv blocks

    def config(self, preset: "Preset", seed: int) -> DistillConfig:
        return DistillConfig(preset.teacher, ModelSpec(self.arch, self.width, self.depth, self.dropout),
                             temperature=self.temperature, alpha=self.alpha, epochs=self.epochs,
                             batch_size=self.batch_size, learning_rate=self.learning_rate,
                             weight_decay=self.weight_decay, augment=self.augment, train_subset=self.train_subset,
                             seed=seed, device="cpu")

    def n_train(self, preset: "Preset") -> int:
        return self.train_subset or preset.train_images

    def describe(self, preset: "Preset", role: str = "kd") -> str:
        n = self.n_train(preset)
        data = f"all {n}" if n == preset.train_images else str(n)
        text = f"{self.arch} {self.width}x{self.depth}, n={data}"
        if role == "kd":
            text += f", T={self.temperature:g}, α={self.alpha:g}"
        text += f", {self.epochs} ep"
        if self.augment:
            text += f", jitter ±{self.augment}"
        if self.batch_size != preset.usual_batch_size:
            text += f", bs {self.batch_size}"
        if self.learning_rate != preset.usual_learning_rate:
            text += f", lr {self.learning_rate:g}"
        if self.weight_decay:
            text += f", wd {self.weight_decay:g}"
        if self.dropout:
            text += f", dropout {self.dropout:g}"
        if not preset.is_smaller_than_teacher(self):
            text += " (teacher-sized: not eligible)"
        return text

    def estimated_seconds(self, preset: "Preset", roles: tuple[str, ...] = ("hard", "kd")) -> float:
        """Seconds for one seed on one thread, from the multiply-accumulates of the students' forward and backward
        passes (3 passes) on the training images, their validation and test evaluation every epoch and the teacher's
        forward passes (once when unaugmented, on every batch when augmented; never for a baseline alone), plus a
        fixed cost per optimiser step (Python and framework overhead; it dominates for small nets on 8×8 images).
        A preset with its own time_model (CNN students) estimates with it instead."""
        if preset.time_model is not None:
            return preset.time_model(self, preset, roles)
        student = preset.mlp_params(self.width, self.depth)
        teacher = preset.mlp_params(preset.teacher.model.width, preset.teacher.model.depth) if "kd" in roles else 0
        n = self.n_train(preset)
        per_epoch = len(roles) * (3 * n + preset.val_images + preset.test_images) * student
        per_epoch += n * teacher if self.augment else 0
        steps = self.epochs * math.ceil(n / self.batch_size)
        return (preset.seconds_per_mac * (self.epochs * per_epoch + (0 if self.augment else n * teacher))
                + preset.seconds_per_step * steps * len(roles) / 2)

    def curve_key(self, role: str, extra: dict) -> str:
        """All but the epochs (with no learning-rate schedule, epoch e of a longer run is exactly an e-epoch run).

        The hard-label student does not depend on T or α (the engine's test_the_hard_label_student_alone_is_the_twin
        holds it to that), so its curves are shared by every temperature and α, and by the baseline alone."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "epochs"}
        if fields["arch"] == "mlp":  # the key MLP curves had before arch existed: cached sweeps stay valid
            del fields["arch"]
        if role == "hard":
            fields = {k: v for k, v in fields.items() if k not in ("temperature", "alpha")}
        return json.dumps({"role": role, **fields, **extra}, sort_keys=True)


# ---- running, with a cache of per-epoch accuracy curves ------------------------------------------------------------

_TEACHERS: dict = {}


def run_one(preset_name: str, setting: Setting, seed: int, roles: tuple[str, ...]) -> dict:
    """One (setting, seed) through the engine in this process: {role: {"val": [...], "test": [...]}} per epoch."""
    from kdviz.core.teachers import get_teacher

    preset = PRESETS[preset_name]
    if preset_name not in _TEACHERS:
        _TEACHERS[preset_name] = get_teacher(preset.teacher, device="cpu")[0]
    started = time.perf_counter()
    curves = {role: {"val": [], "test": []} for role in roles}
    status = None
    for event in distill(setting.config(preset, seed), _TEACHERS[preset_name], students=roles):
        if isinstance(event, EpochEnd):
            for role in roles:
                curves[role]["val"].append(event.val_accuracy[role])
                curves[role]["test"].append(event.accuracy[role])
        elif isinstance(event, Finished):
            status = event.status
    if status != "completed":
        raise RuntimeError(f"{setting.describe(preset)} seed {seed}: the run ended {status}")
    return {"curves": curves, "seconds": time.perf_counter() - started, "epochs": setting.epochs}


def _worker_init(threads: int) -> None:
    import torch

    os.environ["KDVIZ_THREADS"] = str(threads)
    torch.set_num_threads(threads)


class Runner:
    """Runs (setting, seed) pairs through the engine, in parallel processes, and caches each role's curve on disk."""

    def __init__(self, preset: "Preset", cache_path: Path, seeds: list[int], jobs: int, threads: int):
        from kdviz.core.teachers import get_teacher, teacher_key

        self.preset, self.cache_path, self.seeds, self.jobs, self.threads = preset, cache_path, seeds, jobs, threads
        self.curves = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
        _, summary = get_teacher(preset.teacher, device="cpu")  # trained (or loaded) once, before any worker starts
        self.teacher_summary = summary
        log(f"teacher: {summary['teacher']['val_accuracy']:.2%} validation, {summary['teacher']['accuracy']:.2%} test")
        # the teacher's full identity (config, split, versions, threads): a cache from another teacher is never read
        self.extra = {"preset": preset.name, "teacher": teacher_key(preset.teacher, "cpu")}

    def _cached(self, setting: Setting, role: str, seed: int) -> dict | None:
        curve = self.curves.get(setting.curve_key(role, self.extra) + f"#{seed}")
        return curve if curve is not None and curve["epochs"] >= setting.epochs else None

    def ensure(self, requests: list[tuple[Setting, tuple[str, ...]]]) -> None:
        """Run whatever the cache lacks: one run per curve and seed, as long as the longest epoch count asked for."""
        todo: dict[tuple[str, int], list] = {}  # (curve key, seed) → [setting, roles]
        for setting, roles in sorted(requests, key=lambda r: "kd" not in r[1]):  # runs with both students first
            for seed in self.seeds:
                missing = [role for role in roles if self._cached(setting, role, seed) is None]
                if not missing:
                    continue
                hard_key = (setting.curve_key("hard", self.extra), seed)
                key = (setting.curve_key("kd", self.extra), seed) if "kd" in missing else hard_key
                if key == hard_key:  # a run with the KD student may already bring this hard-label curve
                    shared = [t for k, t in todo.items() if "hard" in t[1]
                              and (t[0].curve_key("hard", self.extra), k[1]) == hard_key]
                    if shared:
                        shared[0][0] = max(shared[0][0], setting, key=lambda s: s.epochs)
                        continue
                task = todo.setdefault(key, [setting, set()])
                task[0] = max(task[0], setting, key=lambda s: s.epochs)
                task[1] |= set(missing)
        tasks = [(setting, seed, tuple(r for r in ("hard", "kd") if r in roles))
                 for (_, seed), (setting, roles) in todo.items()]
        if not tasks:
            return
        tasks.sort(key=lambda t: -t[0].estimated_seconds(self.preset, t[2]))
        log(f"running {len(tasks)} runs ({sum(t[0].estimated_seconds(self.preset, t[2]) for t in tasks):.0f} s "
            f"estimated on one thread, {self.jobs} at a time)")
        with ProcessPoolExecutor(self.jobs, initializer=_worker_init, initargs=(self.threads,)) as pool:
            futures = {pool.submit(run_one, self.preset.name, s, seed, roles): (s, seed, roles)
                       for s, seed, roles in tasks}
            for done, future in enumerate(as_completed(futures), start=1):
                setting, seed, roles = futures[future]
                result = future.result()
                for role in roles:
                    key = setting.curve_key(role, self.extra) + f"#{seed}"
                    if self.curves.get(key, {}).get("epochs", -1) < result["epochs"]:  # never shorten a curve
                        self.curves[key] = {"epochs": result["epochs"], **result["curves"][role],
                                            "seconds": result["seconds"]}
                if done % 10 == 0 or done == len(tasks):
                    self._save()
                    log(f"  {done}/{len(tasks)} done")
        self._save()

    def _save(self) -> None:
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.curves))
        os.replace(tmp, self.cache_path)

    def facts(self, setting: Setting, role: str, seed: int) -> dict:
        """Model facts at setting.epochs, as engine.model_facts names them (what results.seed_summary reads)."""
        curve = self._cached(setting, role, seed)
        return {"val_accuracy": curve["val"][setting.epochs], "accuracy": curve["test"][setting.epochs]}

    def row(self, stage: str, setting: Setting, roles: tuple[str, ...], seeds: list[int] | None = None) -> dict:
        """Validation and test statistics over the seeds for one setting (both students, or the baseline alone)."""
        seeds = seeds or self.seeds
        preset = self.preset
        row = {"stage": stage, "config": setting.describe(preset, "kd" if "kd" in roles else "hard"),
               "setting": dataclasses.asdict(setting), "roles": list(roles), "seeds": seeds,
               "seconds_per_seed": setting.estimated_seconds(preset, roles)}
        per_seed = [{role: self.facts(setting, role, seed) for role in roles} for seed in seeds]
        row["per_seed"] = per_seed
        row["stats"] = seed_summary(per_seed, preset.test_images, preset.val_images, roles)
        return row


# ---- what each stage ranks by --------------------------------------------------------------------------------------

def _pick(rows: list[dict], score: Callable[[dict], float], tie: float, preset: "Preset") -> dict:
    """The best row by score among eligible ones (smaller than the teacher, quick enough); within `tie` of the best,
    the quickest wins (a lecture preset should not be slower than it needs to be)."""
    eligible = [r for r in rows if preset.is_smaller_than_teacher(Setting(**r["setting"]))
                and r["seconds_per_seed"] <= preset.max_seconds_per_seed] or rows
    top = max(score(r) for r in eligible)
    tied = [r for r in eligible if score(r) >= top - tie]
    return min(tied, key=lambda r: (r["seconds_per_seed"], -score(r)))


def experiment_score(row: dict) -> float:
    return row["stats"]["val_relative_error_reduction"]


def kd_score(row: dict) -> float:
    return row["stats"]["kd_val_mean"]


def hard_score(row: dict) -> float:
    return row["stats"]["hard_val_mean"]


# ---- the stages: each varies one or two dimensions around the best setting so far ------------------------------------

@dataclass(frozen=True)
class Stage:
    name: str
    kind: str  # "experiment" (where KD helps), "kd" (tune KD), "baseline" (tune the hard-label student alone)
    settings: Callable[[Setting, "Preset"], list[Setting]]


def _epochs(center: Setting, counts) -> list[Setting]:
    return [dataclasses.replace(center, epochs=e) for e in counts]


def lecture_lesson(center: Setting, preset: "Preset") -> list[Setting]:
    """The obvious settings (small students on all the data, T=4, α=0.9, 20 epochs) and the known winning regime."""
    obvious = Setting(train_subset=0, epochs=20, temperature=4.0, alpha=0.9)
    return [dataclasses.replace(obvious, width=30), dataclasses.replace(obvious, width=100), center]


def lecture_size(center: Setting, preset: "Preset") -> list[Setting]:
    """Student width × amount of training data (× epochs, read off the same runs' curves)."""
    settings = []
    for width in (100, 300, 800):
        for n, epochs in ((250, (20, 40, 60)), (500, (20, 40, 60)), (1000, (20, 40)), (2000, (20,)), (0, (20,))):
            settings += [dataclasses.replace(center, width=width, train_subset=n, epochs=e) for e in epochs]
    return settings


def quick_lesson(center: Setting, preset: "Preset") -> list[Setting]:
    """The quick preset before its first sweep (KD lost), a small student on all the data, and the lecture's regime
    carried over (a capable student on little data, T=20, α=1)."""
    old = Setting(width=16, depth=1, train_subset=300, epochs=20, temperature=4.0, alpha=0.7, batch_size=64,
                  learning_rate=3e-3)
    return [old, dataclasses.replace(old, width=64, train_subset=0, alpha=0.9), center]


def quick_size(center: Setting, preset: "Preset") -> list[Setting]:
    """Width × depth × training images (0: all) × epochs; 256x2 is the teacher's size: shown, never chosen."""
    return [dataclasses.replace(center, width=width, depth=depth, train_subset=n, epochs=epochs)
            for depth in (1, 2) for width in (32, 64, 128, 256) for n in (100, 200, 300, 600, 0)
            for epochs in (20, 40, 60)]


def kd_temperature(center, preset):
    return [dataclasses.replace(center, temperature=t) for t in (2.0, 4.0, 8.0, 20.0)]


def kd_alpha(center, preset):
    return [dataclasses.replace(center, alpha=a) for a in (0.5, 0.9, 1.0)]


def jitter(center, preset):
    return [dataclasses.replace(center, augment=a, epochs=e) for a in (0, 1, 2) for e in preset.epoch_counts]


def kd_epochs(center, preset):
    return _epochs(center, preset.epoch_counts)


def learning_rate(center, preset):
    return [dataclasses.replace(center, learning_rate=lr, epochs=e) for lr in preset.learning_rates
            for e in preset.epoch_counts]


def regularise(center, preset):
    """AdamW's weight decay × dropout (the baseline's classic remedies for little data), at every epoch count."""
    return [dataclasses.replace(center, weight_decay=wd, dropout=p, epochs=e) for wd in (0.0, 0.1, 1.0)
            for p in (0.0, 0.2) for e in preset.epoch_counts]


def _stages(lesson, size) -> list[Stage]:
    return [Stage("lesson", "experiment", lesson), Stage("size", "experiment", size),
            Stage("temperature", "kd", kd_temperature), Stage("alpha", "kd", kd_alpha),
            Stage("jitter", "kd", jitter), Stage("epochs", "kd", kd_epochs),
            Stage("learning rate", "kd", learning_rate), Stage("regularise", "kd", regularise),
            # the baseline in the same order as KD's own tuning: jitter, learning rate, then regularisation
            Stage("baseline: jitter", "baseline", jitter),
            Stage("baseline: learning rate", "baseline", learning_rate),
            Stage("baseline: regularise", "baseline", regularise)]


# ---- presets -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Preset:
    """What --preset picks: the teacher (and with it the dataset), the stages and their first centre, the time limit
    and the time model, and the cache file."""

    name: str
    teacher: TeacherConfig
    inputs: int  # pixels per image: the MLP's input width
    classes: int
    train_images: int
    val_images: int
    test_images: int
    reference: Setting  # the first stage's centre
    stages: list[Stage]
    max_seconds_per_seed: float  # estimated, one thread, both students: slower settings are never chosen
    seconds_per_mac: float
    seconds_per_step: float
    usual_batch_size: int  # describe() names the batch size and learning rate only when they differ from these
    usual_learning_rate: float
    epoch_counts: tuple[int, ...]
    learning_rates: tuple[float, ...]
    extra: dict = field(default_factory=dict)
    # (setting, preset, roles) → estimated seconds a seed; None: the MLP model of Setting.estimated_seconds
    time_model: Callable[[Setting, "Preset", tuple[str, ...]], float] | None = None

    def mlp_params(self, width: int, depth: int) -> int:
        return (self.inputs * width + width + (depth - 1) * (width * width + width) + width * self.classes
                + self.classes)

    def params(self, spec: ModelSpec) -> int:
        if spec.arch == "mlp":
            return self.mlp_params(spec.width, spec.depth)
        from kdviz.core.budget import model_cost

        return model_cost(spec, self.input_shape, self.classes).params

    @property
    def input_shape(self) -> tuple[int, int, int]:
        side = math.isqrt(self.inputs)  # the presets' images are square and grey
        return (1, side, side)

    def is_smaller_than_teacher(self, setting: Setting) -> bool:
        return (self.params(ModelSpec(setting.arch, setting.width, setting.depth))
                < self.params(self.teacher.model))

    @property
    def cache_name(self) -> str:
        return f"sweep-{self.name}-curves-v2.json"


LECTURE = Preset(
    "lecture", DEFAULT_TEACHER, inputs=784, classes=10, train_images=3200, val_images=800, test_images=1000,
    reference=Setting(), stages=_stages(lecture_lesson, lecture_size),
    max_seconds_per_seed=15.0,  # a preset must stay quick enough for a live lecture (one thread here)
    # Seconds per multiply-accumulate on one thread of this 2-core machine, unloaded (800x2 on 500 images for 40
    # epochs: 6.6 s for 255 G MACs). Timings measured while other work shares the machine are too noisy to choose by,
    # so the sweep estimates each setting's time from its arithmetic (the measured seconds are kept in the cache).
    seconds_per_mac=6.6 / 255e9, seconds_per_step=0.0, usual_batch_size=128, usual_learning_rate=1e-3,
    epoch_counts=(20, 30, 40, 50, 60), learning_rates=(5e-4, 1e-3, 2e-3))

QUICK_TEACHER = get_preset("quick").teacher  # the preset's own teacher: digits, mlp 256x2, 30 epochs, batch 64
QUICK = Preset(
    "quick", QUICK_TEACHER, inputs=64, classes=10, train_images=1151, val_images=287, test_images=359,
    reference=Setting(width=128, depth=2, train_subset=300, epochs=40, temperature=20.0, alpha=1.0, batch_size=64,
                      learning_rate=3e-3),
    stages=_stages(quick_lesson, quick_size),
    max_seconds_per_seed=3.0,  # "seconds on a laptop": one seed, both students, teacher cached
    # Fitted on one thread of this 2-core machine: about 1 ms per step of the two students (Python and framework
    # overhead, which dominates on 8×8 images) plus 3.6e-11 s per multiply-accumulate.
    seconds_per_mac=3.6e-11, seconds_per_step=1.0e-3, usual_batch_size=64, usual_learning_rate=3e-3,
    epoch_counts=(20, 40, 60, 80), learning_rates=(1e-3, 3e-3, 1e-2))


def fashion_lesson(center: Setting, preset: "Preset") -> list[Setting]:
    """The first grid: CNN students (two conv blocks of 4 or 8 channels, then 8 or 16) on transfer sets of 2000 or
    6000 images, 10 epochs, batch 64, AdamW 3e-3, T=4, α=0.9. Undertrained in 10 epochs (34-72 % validation), and KD
    lost on every row (SWEEP_FASHION.md); kept, at no cost (cached), so the experiment is chosen among them too."""
    cnn = Setting(arch="cnn", width=8, depth=2, train_subset=2000, epochs=10, temperature=4.0, alpha=0.9,
                  batch_size=64, learning_rate=3e-3)
    return [dataclasses.replace(cnn, width=width, train_subset=n, epochs=epochs)
            for width in (4, 8) for n in (2000, 6000) for epochs in (4, 6, 8, 10)]


def fashion_size(center: Setting, preset: "Preset") -> list[Setting]:
    """MLP students with fewer parameters than the CNN teacher (784-16-10: 12.7k, 784-28-10: 22.3k, against 24.2k)
    and 85-150× fewer multiply-adds, on 6000 images or all 54000, × epochs, at T=4, α=0.9. Built on the reference,
    not on the centre (the lesson's CNN rows are another family)."""
    return [dataclasses.replace(preset.reference, width=width, train_subset=n, epochs=epochs)
            for width in (16, 28) for n in (6000, 0) for epochs in preset.epoch_counts]


def fashion_temperature(center, preset):
    return [dataclasses.replace(center, temperature=t) for t in (2.0, 4.0, 8.0)]


def fashion_alpha(center, preset):
    return [dataclasses.replace(center, alpha=a) for a in (0.5, 0.9, 1.0)]


def fashion_stages() -> list[Stage]:
    """The CPU-budget protocol: experiment, T, α, then learning rate × epochs for KD and, over the very same grid, for
    the baseline alone. Not swept (SWEEP_FASHION.md): depth, batch size, jitter, weight decay, dropout, the teacher."""
    return [Stage("lesson", "experiment", fashion_lesson), Stage("size", "experiment", fashion_size),
            Stage("temperature", "kd", fashion_temperature), Stage("alpha", "kd", fashion_alpha),
            Stage("learning rate", "kd", learning_rate), Stage("baseline: learning rate", "baseline", learning_rate)]


def cnn_seconds(setting: Setting, preset: "Preset", roles: tuple[str, ...]) -> float:
    """Seconds for one seed on one thread of this 2-core machine, with a CNN teacher on 28×28 images: a cost per image
    linear in the forward FLOPs and the activation bytes (kdviz.core.budget.model_cost), fitted on cnn 4x2 … 32x3
    (within ±30 %): training (forward, backward, AdamW) 4.1e-11 s/FLOP + 9.4e-10 s/byte, inference in chunks of 1024
    1.7e-11 s/FLOP + 1.1e-9 s/byte. Every epoch evaluates each student on validation and test (for a CNN student
    that costs more than training on a few thousand images); the teacher labels validation and test once, and the
    training images once (on every batch when jittered). MLP students' per-step overhead is underestimated (about 3×),
    but then the CNN teacher's labelling dominates."""
    from kdviz.core.budget import model_cost

    def cost(spec: ModelSpec) -> tuple[float, float]:
        c = model_cost(spec, preset.input_shape, preset.classes)
        flops, activations = c.flops_per_sample, c.activation_bytes_per_sample
        return 4.1e-11 * flops + 9.4e-10 * activations, 1.7e-11 * flops + 1.1e-9 * activations

    train, infer = cost(ModelSpec(setting.arch, setting.width, setting.depth, setting.dropout))
    _, teacher = cost(preset.teacher.model)
    n, evaluated = setting.n_train(preset), preset.val_images + preset.test_images
    students = len(roles) * ((setting.epochs + 1) * evaluated * infer + setting.epochs * n * train)
    labelled = evaluated + (n * setting.epochs if setting.augment else n) * ("kd" in roles)
    return students + labelled * teacher


FASHION_TEACHER = get_preset("fashion").teacher  # the preset's own teacher: cnn 16x3 on all 54000 training images
FASHION = Preset(
    "fashion", FASHION_TEACHER, inputs=784, classes=10, train_images=54000, val_images=6000, test_images=10000,
    reference=Setting(arch="mlp", width=16, depth=1, train_subset=0, epochs=15, temperature=4.0, alpha=0.9,
                      batch_size=128, learning_rate=1e-3),
    stages=fashion_stages(),
    max_seconds_per_seed=120.0,  # both students, teacher cached, one thread: a couple of minutes at most
    seconds_per_mac=0.0, seconds_per_step=0.0, usual_batch_size=128, usual_learning_rate=1e-3,
    epoch_counts=(5, 10, 15), learning_rates=(1e-3, 3e-3), time_model=cnn_seconds)

PRESETS = {"lecture": LECTURE, "quick": QUICK, "fashion": FASHION}


def run_stages(runner: Runner) -> dict:
    """The stages in order, each centred on the best row so far of its kind; returns every row and the choices."""
    preset = runner.preset
    rows: list[dict] = []
    experiment = kd = baseline = None
    for stage in preset.stages:
        roles = ("hard",) if stage.kind == "baseline" else ("hard", "kd")
        center = {"experiment": Setting(**experiment["setting"]) if experiment else preset.reference,
                  "kd": Setting(**kd["setting"]) if kd else None,
                  "baseline": Setting(**baseline["setting"]) if baseline else None}[stage.kind]
        if stage.kind == "baseline" and center is None:  # the baseline starts from the chosen preset's settings
            center = Setting(**kd["setting"])
        if stage.kind == "kd" and center is None:
            center = Setting(**experiment["setting"])
        settings = list(dict.fromkeys(stage.settings(center, preset)))
        log(f"== stage {stage.name} ({stage.kind}), centred on: {center.describe(preset)}")
        runner.ensure([(s, roles) for s in settings])
        stage_rows = [runner.row(stage.name, s, roles) for s in settings]
        for row in stage_rows:
            log(f"[{stage.name}] {row['config']}: {format_row(row)}")
        rows += stage_rows
        if stage.kind == "experiment":
            experiment = _pick([r for r in rows if r["stage"] in ("lesson", "size")], experiment_score,
                               EXPERIMENT_TIE, preset)
        elif stage.kind == "kd":
            pool = [experiment] + [r for r in rows if r["stage"] in _kinds(preset, "kd")]
            kd = _pick(pool, kd_score, ACCURACY_TIE, preset)
        else:
            pool = [r for r in rows if r["stage"] in _kinds(preset, "baseline")]
            baseline = _pick(pool, hard_score, ACCURACY_TIE, preset)
    return {"rows": rows, "experiment": experiment, "chosen": kd, "baseline": baseline}


def _kinds(preset: Preset, kind: str) -> set[str]:
    return {stage.name for stage in preset.stages if stage.kind == kind}


def report(runner: Runner, chosen: dict, baseline: dict, held_out: list[int]) -> dict:
    """Test over the sweep's seeds and over held-out seeds: the preset (KD vs its twin) and KD vs the tuned baseline."""
    preset_setting, baseline_setting = Setting(**chosen["setting"]), Setting(**baseline["setting"])
    out = {}
    for label, seeds in (("sweep seeds", runner.seeds), ("held-out seeds", held_out)):
        if not seeds:
            continue
        saved, runner.seeds = runner.seeds, seeds
        runner.ensure([(preset_setting, ("hard", "kd")), (baseline_setting, ("hard",))])
        twin = runner.row("report", preset_setting, ("hard", "kd"))
        tuned = [{"hard": runner.facts(baseline_setting, "hard", s), "kd": runner.facts(preset_setting, "kd", s)}
                 for s in seeds]
        out[label] = {"seeds": seeds, "twin": twin["stats"], "per_seed": twin["per_seed"],
                      "vs_tuned_baseline": seed_summary(tuned, runner.preset.test_images, runner.preset.val_images),
                      "tuned_per_seed": tuned}
        runner.seeds = saved
    return out


# ---- output ----------------------------------------------------------------------------------------------------

def format_row(row: dict) -> str:
    s = row["stats"]
    if "kd_val_mean" not in s:
        return (f"hard val {100 * s['hard_val_mean']:.2f} ± {100 * s['hard_val_std']:.2f} "
                f"(test {100 * s['hard_mean']:.2f})")
    return (f"val hard {100 * s['hard_val_mean']:.2f} → KD {100 * s['kd_val_mean']:.2f}, "
            f"{100 * s['val_relative_error_reduction']:+.1f}% val errors, val wins {s['kd_val_wins']}/{s['n_seeds']} "
            f"(test {100 * s['hard_mean']:.2f} → {100 * s['kd_mean']:.2f})")


def markdown_table(rows: list[dict], preset: Preset) -> str:
    lines = [f"| stage | config | hard val % | KD val % | val errors /{preset.val_images} hard → KD | "
             f"KD val wins | hard test % | KD test % | test errors /{preset.test_images} hard → KD | est. s/seed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    pm = lambda s, k: f"{100 * s[k + '_mean']:.2f} ± {100 * s[k + '_std']:.2f}"  # noqa: E731
    for r in rows:
        s = r["stats"]
        if "kd_val_mean" in s:
            lines.append(f"| {r['stage']} | {r['config']} | {pm(s, 'hard_val')} | {pm(s, 'kd_val')} "
                         f"| {s['hard_val_errors_mean']:.1f} → {s['kd_val_errors_mean']:.1f} "
                         f"| {s['kd_val_wins']}/{s['n_seeds']} | {pm(s, 'hard')} | {pm(s, 'kd')} "
                         f"| {s['hard_errors_mean']:.1f} → {s['kd_errors_mean']:.1f} | {r['seconds_per_seed']:.1f} |")
        else:
            lines.append(f"| {r['stage']} | {r['config']} | {pm(s, 'hard_val')} | | {s['hard_val_errors_mean']:.1f} "
                         f"| | {pm(s, 'hard')} | | {s['hard_errors_mean']:.1f} | {r['seconds_per_seed']:.1f} |")
    return "\n".join(lines)


def format_report(result: dict, preset: Preset) -> str:
    lines = [f"experiment (by validation error reduction): {result['experiment']['config']}",
             f"chosen preset (by KD validation accuracy): {result['chosen']['config']}",
             f"tuned baseline (by hard-label validation accuracy): {result['baseline']['config']}"]
    for label, part in result["report"].items():
        twin, tuned = part["twin"], part["vs_tuned_baseline"]
        seeds = part["seeds"]
        lines.append(f"\ntest, {label} {seeds[0]}-{seeds[-1]} ({len(seeds)} seeds), errors of {preset.test_images}:")
        lines.append(f"  twin (same settings): hard {100 * twin['hard_mean']:.2f} ± {100 * twin['hard_std']:.2f} % "
                     f"({twin['hard_errors_mean']:.1f}) → KD {100 * twin['kd_mean']:.2f} ± {100 * twin['kd_std']:.2f} % "
                     f"({twin['kd_errors_mean']:.1f}): {100 * twin['relative_error_reduction']:+.1f}% errors, "
                     f"KD wins {twin['kd_wins']}/{twin['n_seeds']}")
        lines.append(f"  tuned baseline: hard {100 * tuned['hard_mean']:.2f} ± {100 * tuned['hard_std']:.2f} % "
                     f"({tuned['hard_errors_mean']:.1f}) → KD {100 * tuned['kd_mean']:.2f} % "
                     f"({tuned['kd_errors_mean']:.1f}): {100 * tuned['relative_error_reduction']:+.1f}% errors, "
                     f"KD wins {tuned['kd_wins']}/{tuned['n_seeds']}")
        per_seed = lambda facts, role: " ".join(str(round((1 - f[role]["accuracy"]) * preset.test_images))  # noqa: E731
                                                for f in facts)
        lines.append(f"  errors per seed: twin hard {per_seed(part['per_seed'], 'hard')}; KD "
                     f"{per_seed(part['per_seed'], 'kd')}; tuned baseline {per_seed(part['tuned_per_seed'], 'hard')}")
    return "\n".join(lines)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_seeds(text: str) -> list[int]:
    """'0-9' or '0,3,5' (or a mix: '0-4,7'); '' for none."""
    seeds: list[int] = []
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        seeds += list(range(int(low), int(high) + 1)) if high else [int(low)]
    return seeds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(PRESETS), default="lecture")
    parser.add_argument("--seeds", type=parse_seeds, default=list(range(10)), help="the sweep's seeds (default 0-9)")
    parser.add_argument("--held-out", type=parse_seeds, default=list(range(10, 20)),
                        help="seeds never run during the sweep, for the final report only (default 10-19)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="accuracy curves of finished runs (default: $KDVIZ_HOME/sweep-<preset>-curves-v2.json)")
    parser.add_argument("--json", type=Path, default=None, help="also write every row, the choices and the report")
    parser.add_argument("--jobs", type=int, default=1, help="processes side by side (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    os.environ["KDVIZ_THREADS"] = str(args.threads)  # the engine (and the teacher's cache key) read it
    _worker_init(args.threads)
    from kdviz.core.paths import home

    runner = Runner(preset, args.cache or home() / preset.cache_name, args.seeds, args.jobs, args.threads)
    result = run_stages(runner)
    result["report"] = report(runner, result["chosen"], result["baseline"], args.held_out)
    print(markdown_table(result["rows"], preset))
    print()
    print(format_report(result, preset))
    if args.json:
        args.json.write_text(json.dumps({"preset": preset.name, **result, "threads": args.threads,
                                         "teacher": runner.teacher_summary, "cpu_count": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
