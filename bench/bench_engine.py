"""Engine speed, measured side by side in one run: overhead vs a bare PyTorch loop, cached teacher logits, CLI times.

(a) engine epoch time ÷ a bare hand-written loop doing the same work (same model, tensors, batches, Adam, per-epoch
    test accuracy; no events), for one model (train_teacher) and for two students (distill); target ≤ 1.10.
    An epoch is timed from one EpochEnd to the next (steady state; the first epoch is warm-up); the whole-run ratio,
    which also counts one-off set-up such as the epoch-0 evaluation, is printed alongside.
(b) a KD epoch with cached teacher logits (augment=0) vs the teacher run on every batch, for the default teacher
    (the MLP 784-1200-1200-10 on mnist5k); target ≥ 2×.
(c) `python -m kdviz distill --preset lecture --seeds 0` with the teacher cached (target ≤ 20 s) and the default
    teacher's first training (target ≤ 60 s), in a temporary KDVIZ_HOME; with torch's default thread count and with
    OMP_NUM_THREADS=1 (on a shared 2-core machine, two threads spin-wait on each other and run several times slower).
Repetitions are interleaved (A B A B ...) and medians reported, so load from other processes hits both sides alike.
(a) and (b) run torch on one thread and judge the targets on this process's CPU time, which other processes' load
does not distort (wall time is printed too); --threads 0 uses torch's default instead.
Usage: python bench/bench_engine.py [--repeats 5] [--epochs 3] [--threads 1] [--parts abc]
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KDVIZ_HOME", tempfile.mkdtemp(prefix="kdviz-bench-"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from kdviz.core.data import load_dataset, random_shift  # noqa: E402
from kdviz.core.engine import DistillConfig, EpochEnd, distill, train_teacher  # noqa: E402
from kdviz.core.models import ModelSpec, count_parameters, create_model  # noqa: E402
from kdviz.core.presets import DEFAULT_TEACHER, get_preset  # noqa: E402

RESULTS: list[tuple[str, float, str, bool]] = []  # (what, value, target text, passed)


def record(what: str, value: float, target: str, passed: bool) -> None:
    RESULTS.append((what, value, target, passed))


def now() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): CPU time is what a busy machine does not distort."""
    return time.perf_counter(), time.process_time()


def epoch_times(stamps: list[float]) -> list[float]:
    """Durations of epochs 2, 3, ... from the clocks at the end of epochs 1, 2, ... (epoch 1 is the warm-up:
    Adam's state, the allocator, the teacher-logit cache)."""
    return [b - a for a, b in zip(stamps, stamps[1:])]


def engine_epochs(events) -> tuple[list, tuple]:
    """Consume an engine stream; return the clock at each EpochEnd with epoch >= 1, and the clock at the start."""
    started, stamps = now(), []
    for event in events:
        if isinstance(event, EpochEnd) and event.epoch >= 1:
            stamps.append(now())
    return stamps, started


def interleaved(run_a, run_b, repeats: int) -> list:
    """Run A B A B ...; each run returns (clocks at each epoch end, clock at its start)."""
    return [(run_a(), run_b()) for _ in range(repeats)]


def summarise(pairs: list, clock: int) -> dict:
    """clock 0: wall time, 1: CPU time. Medians of each side's steady-state epoch time (the first epoch is warm-up),
    of the per-pair epoch ratio A/B (with its spread) and of the per-pair whole-run ratio (which counts set-up)."""
    epochs_a, epochs_b, ratios, total_ratios = [], [], [], []
    for (stamps_a, start_a), (stamps_b, start_b) in pairs:
        a = statistics.median(epoch_times([s[clock] for s in stamps_a]))
        b = statistics.median(epoch_times([s[clock] for s in stamps_b]))
        total = (stamps_a[-1][clock] - start_a[clock]) / (stamps_b[-1][clock] - start_b[clock])
        epochs_a.append(a), epochs_b.append(b), ratios.append(a / b), total_ratios.append(total)
    return {"a": statistics.median(epochs_a), "b": statistics.median(epochs_b), "ratio": statistics.median(ratios),
            "low": min(ratios), "high": max(ratios), "total_ratio": statistics.median(total_ratios)}


# ---- bare loops: what a person would write by hand for the same work -------------------------------------------

def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        value = float((model(x).argmax(-1) == y).float().mean())
    model.train()
    return value


def bare_single(config, dataset) -> tuple[list, tuple]:
    started, stamps = now(), []
    x, y = dataset.train_x, dataset.train_y
    model = create_model(config.model, dataset.input_shape, dataset.num_classes, torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(config.epochs):
        model.train()
        for index in torch.randperm(len(x), generator=generator).split(config.batch_size):
            batch = random_shift(x[index], config.augment, generator, dataset.background)
            loss = F.cross_entropy(model(batch), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        accuracy(model, dataset.val_x, dataset.val_y), accuracy(model, dataset.test_x, dataset.test_y)
        stamps.append(now())
    return stamps, started


def bare_distill(config: DistillConfig, teacher, dataset, teacher_every_batch: bool = False
                 ) -> tuple[list, tuple]:
    started, stamps = now(), []
    x, y, temperature, alpha = dataset.train_x, dataset.train_y, config.temperature, config.alpha
    teacher.eval()
    with torch.no_grad():
        cached = None if teacher_every_batch else teacher(x)
    hard = create_model(config.student, dataset.input_shape, dataset.num_classes, torch.Generator().manual_seed(0))
    kd = copy.deepcopy(hard)
    optimizers = [torch.optim.AdamW(m.parameters(), lr=config.learning_rate, weight_decay=0.0) for m in (hard, kd)]
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(config.epochs):
        for index in torch.randperm(len(x), generator=generator).split(config.batch_size):
            batch, labels = x[index], y[index]
            if cached is None:
                with torch.no_grad():
                    teacher_logits = teacher(batch)
            else:
                teacher_logits = cached[index]
            hard_loss = F.cross_entropy(hard(batch), labels)
            student_logits = kd(batch)
            log_q = F.log_softmax(student_logits / temperature, -1)
            log_p = F.log_softmax(teacher_logits / temperature, -1)
            soft = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * temperature**2
            kd_loss = alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)
            for loss, optimizer in ((hard_loss, optimizers[0]), (kd_loss, optimizers[1])):
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        for model in (hard, kd):  # the engine reports validation and test accuracy every epoch
            accuracy(model, dataset.val_x, dataset.val_y), accuracy(model, dataset.test_x, dataset.test_y)
        stamps.append(now())
    return stamps, started


# ---- (a) engine overhead ---------------------------------------------------------------------------------------

def report(label: str, pairs: list, a: str, b: str, unit: str, target: str, passed) -> None:
    """Print the CPU-time and wall-time results of interleaved pairs; the target is judged on CPU time."""
    for clock, name in ((1, "cpu"), (0, "wall")):
        result = summarise(pairs, clock)
        print(f"  {label:<46} {name:<4} {a} {result['a']:6.3f} s/epoch  {b} {result['b']:6.3f} s/epoch  {unit} "
              f"{result['ratio']:.3f} (pairs {result['low']:.2f}..{result['high']:.2f}; "
              f"whole runs {result['total_ratio']:.3f})")
        if clock == 1:
            record(f"{label} ({unit}, CPU time)", result["ratio"], target, passed(result["ratio"]))


def bench_overhead(repeats: int, epochs: int, dataset, teacher) -> None:
    print(f"\n(a) engine ÷ bare loop, steady-state epoch (epochs 2..{epochs}), median of {repeats} interleaved pairs")
    for augment in (0, DEFAULT_TEACHER.augment):
        config = dataclasses.replace(DEFAULT_TEACHER, epochs=epochs, augment=augment)
        pairs = interleaved(lambda: engine_epochs(train_teacher(config, "cpu")),
                            lambda: bare_single(config, dataset), repeats)
        report(f"train_teacher, MLP 1200x2, jitter {augment}", pairs, "engine", "bare", "engine ÷ bare", "≤ 1.10",
               lambda ratio: ratio <= 1.10)
    config = dataclasses.replace(get_preset("lecture"), epochs=epochs, train_subset=0, augment=0, device="cpu")
    pairs = interleaved(lambda: engine_epochs(distill(config, teacher)),
                        lambda: bare_distill(config, teacher, dataset), repeats)
    report("distill, two MLP 800x2 students, 3200 images", pairs, "engine", "bare", "engine ÷ bare", "≤ 1.10",
           lambda ratio: ratio <= 1.10)


# ---- (b) cached teacher logits ---------------------------------------------------------------------------------

def bench_cached_logits(repeats: int, epochs: int, dataset, teacher) -> None:
    print("\n(b) KD epoch with cached teacher logits vs the teacher (MLP 1200x2) on every batch, 3200 images")
    lecture = dataclasses.replace(get_preset("lecture"), epochs=epochs, train_subset=0, augment=0, device="cpu")
    for width in (800, 100):  # the lecture preset's student, and a small one
        config = dataclasses.replace(lecture, student=ModelSpec("mlp", width, 2))
        student = create_model(config.student, dataset.input_shape, dataset.num_classes)
        student_macs, teacher_macs = count_parameters(student), count_parameters(teacher)  # MLP: MACs ≈ weights
        ceiling = (6 * student_macs + teacher_macs) / (6 * student_macs)  # two students × (forward + 2× backward)
        print(f"  students MLP {width}x2: the cache can save at most the teacher's forward pass, a {ceiling:.2f}× "
              f"ceiling (teacher {teacher_macs / 1e6:.2f}M multiply-adds per image, each student "
              f"{student_macs / 1e6:.2f}M × 3 for forward and backward)")
        # the engine: augment=0 caches; augment=1 jitters each batch, so the teacher must label every batch
        pairs = interleaved(lambda: engine_epochs(distill(dataclasses.replace(config, augment=1), teacher)),
                            lambda: engine_epochs(distill(config, teacher)), repeats)
        report(f"students MLP {width}x2, engine (jitter 1 vs 0)", pairs, "per batch", "cached", "speed-up", "≥ 2×",
               lambda ratio: ratio >= 2)
        # the same hand-written loop with and without the cache, nothing else different (no jitter)
        pairs = interleaved(lambda: bare_distill(config, teacher, dataset, True),
                            lambda: bare_distill(config, teacher, dataset), repeats)
        report(f"students MLP {width}x2, same loop (cache only)", pairs, "per batch", "cached", "speed-up", "≥ 2×",
               lambda ratio: ratio >= 2)


# ---- (c) the command line, wall time ---------------------------------------------------------------------------

def bench_cli(threads: int | None) -> None:
    """threads None: torch's default (what `python -m kdviz` does today); n: OMP_NUM_THREADS=n."""
    shown = "torch's default threads" if threads is None else f"OMP_NUM_THREADS={threads}"
    print(f"\n(c) command-line wall times in a fresh KDVIZ_HOME, {shown} (includes start-up and importing torch)")
    home = tempfile.mkdtemp(prefix="kdviz-bench-cli-")
    env = {**os.environ, "KDVIZ_HOME": home, "PYTHONPATH": str(ROOT)}
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    code = ("import time, torch; from kdviz.core.presets import DEFAULT_TEACHER; from kdviz.core.teachers import get_teacher; "
            "t = time.perf_counter(); _, s = get_teacher(DEFAULT_TEACHER, 'cpu'); "
            "print(f\"{time.perf_counter() - t:.2f} {s['teacher']['accuracy']:.4f} {torch.get_num_threads()}\")")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    process_wall = time.perf_counter() - started
    train_seconds, teacher_accuracy, used = done.stdout.split()
    train_seconds = float(train_seconds)
    print(f"  default teacher, first training ({used} threads): {train_seconds:.1f} s (process {process_wall:.1f} s), "
          f"{float(teacher_accuracy):.2%} test accuracy")
    record(f"default teacher first training, {shown} (s)", train_seconds, "≤ 60 s", train_seconds <= 60)

    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kdviz", "distill", "--preset", "lecture", "--seeds", "0"], env=env,
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0 or "cached" not in done.stderr:
        raise SystemExit(f"kdviz distill failed or did not use the cached teacher:\n{done.stderr}")
    print(f"  python -m kdviz distill --preset lecture --seeds 0 (teacher cached): {wall:.1f} s")
    for line in done.stdout.splitlines():
        if line.startswith(("hard-label", "KD student", "KD helped", "KD did")):
            print(f"    {line}")
    record(f"distill --preset lecture --seeds 0, teacher cached, {shown} (s)", wall, "≤ 20 s", wall <= 20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="per run; epoch 1 is warm-up, epochs 2.. are timed")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for (a) and (b); 0: torch's default (then CPU time counts spin-waiting)")
    parser.add_argument("--parts", default="abc", help="which of the sections (a), (b), (c) to run, e.g. ab")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is warm-up and is not timed")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"kdviz engine benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    dataset = load_dataset("mnist5k")
    teacher = create_model(DEFAULT_TEACHER.model, dataset.input_shape, dataset.num_classes,
                           torch.Generator().manual_seed(0)).eval()  # untrained: we measure cost, not skill
    if "a" in args.parts:
        bench_overhead(args.repeats, args.epochs, dataset, teacher)
    if "b" in args.parts:
        bench_cached_logits(max(3, args.repeats // 2), args.epochs, dataset, teacher)
    if "c" in args.parts:
        bench_cli(None)
        bench_cli(1)
    print(f"\nsummary (load average {os.getloadavg()[0]:.1f} at the end)")
    for what, value, target, passed in RESULTS:
        print(f"  {'PASS' if passed else 'FAIL'}  {what}: {value:.3g} (target {target})")
    return 0  # a benchmark reports; it does not fail the build on a busy machine


if __name__ == "__main__":
    sys.exit(main())
