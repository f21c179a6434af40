"""Estimated against measured peak memory: does the budget's estimate (kdviz.experiments.experiment_cost, and
kdviz.core.budget.run_cost for a plain distillation) cover what a run really holds? One fresh process per case.

    python -m bench.memory_peak                 # every case: the defaults and the presets; prints the table
    python -m bench.memory_peak --cases gradient-variance:default quick
    python -m bench.memory_peak --cases fashion compression:fashion --allocator both --repeats 3

--allocator both measures each case with glibc's mmap threshold fixed at 32 MB (what every kdviz process does,
kdviz.core.engine.fix_allocator) and with glibc's dynamic threshold (KDVIZ_MALLOC=default), interleaved, and prints
the spread of each side's peaks and the run's CPU time fixed ÷ dynamic (the cost of the fix to training speed).

How a case is measured (CPU, Linux): tracemalloc does not see torch's allocator, so the measure is the process's
resident memory, what the server really takes from the machine (allocator slack included). In a fresh interpreter the
case's estimate is computed (of the full config), everything a server has already loaded is loaded (torch.func, the
FLOP counter, torchvision, the dataset, and the code paths of one tiny distillation); then the peak resident set is
reset (/proc/self/clear_refs 5), the baseline is the current resident set, and the run's peak is the high-water mark
VmHWM at the end minus that baseline, plus the loaded dataset's tensor bytes (the estimate counts the data too). The
teacher is built with random weights (a cached one is the same size) and the run is
cut to reach its peak and no further: one epoch, the trainings' memory does not grow with epochs; gradient-variance
measures one point (per point the peak is the same); the capacity grid only its largest cell; the compression
experiment's timings short and its energy from a fixed power (CodeCarbon's own memory is not the run's).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

MB = 2**20

DEFAULT_CASES = ("gradient-variance:default", "missing-class:default", "capacity:default", "ensemble:default",
                 "compression:default", "quick")
PAPER_CASES = ("capacity-gap:default", "label-smoothing:default", "patient-consistent:default")  # When it fails
PRESET_CASES = tuple(f"{name}:{preset}" for name in ("gradient-variance", "missing-class", "capacity", "ensemble",
                                                     "compression") for preset in ("lecture", "fashion")) + \
    ("lecture", "fashion")


def full_config(case: str):
    """The case's config as a user runs it: an experiment's default or with a preset's distillation, or a preset."""
    from kdviz import experiments
    from kdviz.core.presets import get_preset

    name, _, preset = case.partition(":")
    if not preset:
        return dataclasses.replace(get_preset(name), device="cpu")
    config = experiments.experiment(name).default_config()
    distill = config.distill if preset == "default" else get_preset(preset)
    return dataclasses.replace(config, distill=dataclasses.replace(distill, device="cpu"))


def trimmed(config):
    """config cut to reach its peak and no further (module docstring)."""
    from kdviz import experiments

    one_epoch = dataclasses.replace(getattr(config, "distill", config), epochs=1)
    name = experiments.name_of(config)
    if name is None:
        return one_epoch
    one_epoch = dataclasses.replace(one_epoch, teacher=dataclasses.replace(one_epoch.teacher, epochs=1))
    changes = {"distill": one_epoch}
    if name == "gradient-variance":
        changes |= {"epochs": (1,), "temperatures": (1.0,)}
    elif name == "capacity":
        from kdviz.experiments.capacity import grid

        largest = max(grid(config), key=lambda c: (c.student.width, c.train_subset == 0, c.train_subset))
        changes |= {"widths": (largest.student.width,), "train_subsets": (largest.train_subset,),
                    "width_subset": largest.train_subset, "data_width": largest.student.width}
    elif name == "compression":
        changes |= {"min_run_time": 0.01, "power_watts": 10.0}
    elif name == "capacity-gap":  # every teacher (they may be held at once), one epoch each; one T
        changes |= {"early_stop_epochs": 0, "temperatures": config.temperatures[:1]}
    elif name == "label-smoothing":
        changes |= {"temperatures": config.temperatures[:1]}
    elif name == "patient-consistent":  # both runs, one epoch
        changes |= {"epochs": (1,)}
    return dataclasses.replace(config, **changes)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_resident_bytes() -> int:
    """VmHWM: the resident set's high-water mark since the process started or since _reset_peak."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident set (Linux ≥ 4.0)


def child(case: str) -> dict:
    """Measure one case in this (fresh) process: {"case", "estimate", "measured"} in bytes."""
    import gc

    import torch
    import torch.func  # noqa: F401 — imported by a server long before a run: not the run's memory
    import torch.utils.flop_counter  # noqa: F401
    import torchvision  # noqa: F401
    from kdviz import experiments
    from kdviz.core.budget import run_cost
    from kdviz.core.data import load_dataset
    from kdviz.core.engine import (DistillConfig, TeacherConfig, configure_threads, distill, fix_allocator,
                                   generator, run_to_end)
    from kdviz.core.models import ModelSpec, create_model

    config = full_config(case)
    base = getattr(config, "distill", config)
    name = experiments.name_of(config)
    estimate = (experiments.experiment_cost(config, teacher_cached=True) if name else
                run_cost(config, teacher_cached=True)).memory_bytes
    run_config = trimmed(config)
    configure_threads()
    data = load_dataset(base.dataset)
    data_bytes = sum(t.numel() * t.element_size() for t in vars(data).values() if isinstance(t, torch.Tensor))
    tiny = DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 8, 1)), ModelSpec("mlp", 8, 1), epochs=1,
                         train_subset=50, device="cpu", probe_size=5)
    run_to_end(distill(tiny, create_model(tiny.teacher.model, (1, 8, 8), 10, generator(0, "init"))))  # code paths
    for spec in (base.teacher.model, base.student):  # and the case's architectures' kernels (a CNN's oneDNN code
        warm = create_model(spec, data.input_shape, data.num_classes, generator(0, "init"))  # and caches): a server
        warm(data.train_x[:8]).sum().backward()  # that ran one before has them; they are not a run's memory
        with torch.no_grad():
            warm(data.train_x[:8])
    del warm
    gc.collect()
    _reset_peak()
    baseline = _resident_bytes()
    teacher = create_model(base.teacher.model, data.input_shape, data.num_classes, generator(base.teacher.seed, "init"))
    stream = experiments.experiment(name).run(run_config, teacher) if name else distill(run_config, teacher)
    cpu, wall = time.process_time(), time.perf_counter()
    finished = run_to_end(stream)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = _peak_resident_bytes()
    return {"case": case, "status": finished.status, "estimate": int(estimate),
            "measured": int(peak - baseline + data_bytes), "cpu_s": cpu, "wall_s": wall,
            "allocator_fixed": fix_allocator()}


def measure(case: str, timeout: float = 600, allocator: str = "fixed") -> dict:
    """Run child(case) in a fresh interpreter (ru_maxrss is a process's peak: one case per process); allocator
    "dynamic" leaves glibc's mmap threshold dynamic (KDVIZ_MALLOC=default)."""
    done = subprocess.run([sys.executable, "-m", "bench.memory_peak", "--child", case], capture_output=True,
                          text=True, timeout=timeout, env=_measure_env(allocator),
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise RuntimeError(f"{case}: {why}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure_env(allocator: str) -> dict:
    env = {**os.environ, "KDVIZ_THREADS": "1"}
    env.pop("KDVIZ_MALLOC", None)
    if allocator == "dynamic":
        env["KDVIZ_MALLOC"] = "default"
    return env


class WarmParent:
    """Cases measured in children forked from one warm interpreter: each case still runs in a process of its own (its
    own peak, VmHWM reset in the child), but the imports every child would repeat (torch, torch.func, torchvision,
    kdviz: about 3 s of CPU each) are paid once. The parent runs no torch operation before it forks (no thread pool
    to inherit). For tests/test_budget_memory.py; `measure` (a fresh interpreter a case) stays the benchmark's way."""

    def __init__(self, allocator: str = "fixed", timeout: float = 600):
        self.timeout = timeout
        self.process = subprocess.Popen([sys.executable, "-m", "bench.memory_peak", "--serve"], text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_measure_env(allocator),
                                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def measure(self, case: str) -> dict:
        self.process.stdin.write(case + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{case}: the warm parent ended (exit {self.process.wait(self.timeout)})")
        row = json.loads(line)
        if "error" in row:
            raise RuntimeError(f"{case}: {row['error']}")
        return row

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(self.timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def serve() -> None:
    """WarmParent's side: import, then fork a child per case name read from stdin; one JSON line back per case."""
    import torch  # noqa: F401
    import torch.func  # noqa: F401
    import torch.utils.flop_counter  # noqa: F401
    import torchvision  # noqa: F401

    import kdviz.core.engine  # noqa: F401
    import kdviz.experiments  # noqa: F401

    for line in sys.stdin:
        case = line.strip()
        read, write = os.pipe()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the child: one case, its answer through the pipe
            os.close(read)
            try:
                answer = json.dumps(child(case))
            except BaseException as error:  # noqa: BLE001 — told to the parent, which raises it in the test
                answer = json.dumps({"case": case, "error": f"{type(error).__name__}: {error}"})
            with os.fdopen(write, "w") as out:
                out.write(answer)
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as answer_pipe:
            answer = answer_pipe.read()
        _, code = os.waitpid(pid, 0)
        print(answer or json.dumps({"case": case, "error": f"the child ended with status {code}"}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES + PAPER_CASES + PRESET_CASES))
    parser.add_argument("--allocator", choices=("fixed", "both"), default="fixed",
                        help="both: also with glibc's dynamic mmap threshold, interleaved (module docstring)")
    parser.add_argument("--repeats", type=int, default=1, help="processes per case (and per allocator)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    from kdviz.core.budget import format_bytes

    if args.allocator == "both":
        return compare_allocators(args.cases, args.repeats)

    print(f"{'case':<30}{'estimate':>12}{'measured':>12}{'measured/estimate':>19}")
    for case in args.cases:
        for _ in range(args.repeats):
            try:
                row = measure(case)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                print(f"{case:<30}  not measured: {error}")
                continue
            print(f"{case:<30}{format_bytes(row['estimate']):>12}{format_bytes(row['measured']):>12}"
                  f"{row['measured'] / row['estimate']:>19.2f}", flush=True)
    return 0


def compare_allocators(cases: list[str], repeats: int) -> int:
    """Each case `repeats` times with the fixed and the dynamic threshold, interleaved (A B A B: load hits both)."""
    import statistics

    from kdviz.core.budget import format_bytes

    print(f"{'case':<26}{'estimate':>10}{'fixed: peaks':>26}{'dynamic: peaks':>26}{'CPU fixed/dynamic':>19}")
    for case in cases:
        rows: dict[str, list[dict]] = {"fixed": [], "dynamic": []}
        try:
            for _ in range(repeats):
                for side in rows:
                    rows[side].append(measure(case, allocator=side))
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            print(f"{case:<26}  not measured: {error}")
            continue
        assert all(r["allocator_fixed"] for r in rows["fixed"]) and not any(r["allocator_fixed"]
                                                                              for r in rows["dynamic"])
        peaks = {side: " ".join(f"{r['measured'] / MB:.0f}" for r in rs) + " MB" for side, rs in rows.items()}
        ratio = statistics.median(r["cpu_s"] for r in rows["fixed"]) / statistics.median(
            r["cpu_s"] for r in rows["dynamic"])
        print(f"{case:<26}{format_bytes(rows['fixed'][0]['estimate']):>10}{peaks['fixed']:>26}"
              f"{peaks['dynamic']:>26}{ratio:>19.2f}", flush=True)
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
