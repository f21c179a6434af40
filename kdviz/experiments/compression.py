"""Compression: what a smaller student saves. The teacher, the hard-label student, the KD student and the KD student
quantised to int8 side by side: parameters, bytes in memory and on disk, FLOPs per image, latency at batch 1 and at a
large batch, throughput, energy per prediction, and test accuracy (validation beside it).

The students are either trained first (one kdviz.core.engine.distill run of `distill`, both students from the same
initial weights) or taken from a finished distillation run on this server (`source_run`: its students, its teacher =
distill.teacher; config_for_run builds that config). Everything is measured on the config's device with kdviz's
thread count:

* parameters and bytes: models.count_parameters / size_bytes (the weights in memory, fp32), and the length of
  torch.save(state_dict) (on disk);
* FLOPs per image: kdviz.core.budget.forward_flops on a batch of one (FlopCounterMode: a multiply-add is 2 FLOPs);
* latency and throughput: kdviz.core.energy.time_inference (torch.utils.benchmark.Timer, medians, warm-up excluded);
  the keys say batch1 / batch256 for the default batch_sizes (1, 256), whatever the config's are;
* energy: kdviz.core.energy.energy_per_prediction over 5 × min_run_time seconds (at most 10) at the large batch,
  from CodeCarbon (measured where the machine has energy counters, else CodeCarbon's estimate: the reading says
  which) or from a power you give (power_watts: an estimate, watts × time). See kdviz.core.energy for what each
  includes.

The int8 model is torch.ao.quantization.quantize_dynamic of the KD student's Linear layers (weights stored as int8,
activations quantised on the fly), on the CPU only: PyTorch has no CUDA kernels for it, and it is skipped with a
Notice on another device, for a student without Linear layers, or if it fails. torch.ao.quantization is deprecated
in favour of torchao (its successor, not a dependency here); its warnings are silenced. FlopCounterMode does not see
quantised ops, so the int8 row's FLOPs (and parameters) are the float model's it came from: the same multiply-adds,
in int8; its size in memory counts int8 weights at 1 byte and fp32 biases.

Beside the measured models, a case study from torchvision: ResNet-152 (teacher) and ResNet-50 (student) built
without weights on the meta device (nothing allocated, nothing downloaded), their parameters and FLOPs at 224×224
counted live, next to torchvision's own GMACs and ImageNet top-1 from the IMAGENET1K_V1 weights' metadata, and the
lecture's quoted numbers (lecture_numbers). The case study is in the Finished summary only, not a Measured point:
the points are the measured models, one per row.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import io
import math
import time
import warnings
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from kdviz.core.flags import flag
from kdviz.core.engine import DistillConfig, Diverged, EpochEnd, Finished, Notice, StopCheck, check_config, distill
from kdviz.core.roles import ROLE_NAMES
from kdviz.experiments.events import Measured

NAME = "compression"
ROLES = ("teacher", "hard", "kd", "kd_int8")
LABELS = {role: ROLE_NAMES.get(role, fallback) for role, fallback in  # the app's names for the roles
          (("teacher", "teacher"), ("hard", "hard-label student"), ("kd", "KD student"),
           ("kd_int8", "KD student, int8"))}
ROW_KEYS = ("name", "role", "params", "size_bytes", "disk_bytes", "flops_per_image", "latency_ms_batch1",
            "latency_ms_batch256", "throughput_per_s", "accuracy", "val_accuracy", "energy_j_per_prediction",
            "energy_j_per_million", "energy_measured", "power_watts", "power_source", "energy_other_trainings")
MEAN_KEYS = ("latency_ms_batch1", "latency_ms_batch256", "throughput_per_s", "accuracy", "val_accuracy",
             "energy_j_per_prediction", "energy_j_per_million", "power_watts")
ENERGY_WINDOW_FACTOR = 5  # the energy of a model is measured over this many × min_run_time s (≤ 10 s)
CASE_STUDY = (("teacher", "ResNet-152", "resnet152", "ResNet152_Weights"),
              ("student", "ResNet-50", "resnet50", "ResNet50_Weights"))
CASE_WEIGHTS = "IMAGENET1K_V1"


@dataclass(frozen=True)
class CompressionConfig:
    """The models measured and how: `distill` is the teacher and the students (trained first unless source_run names
    a finished distillation run whose students are measured); power_watts None: CodeCarbon, a number: an estimate
    from that power; quantize: also the KD student in int8; batch_sizes: (small, large) for latency and throughput;
    min_run_time: seconds per timing (the energy window is 5 × it, at most 10 s)."""

    distill: DistillConfig
    source_run: str = flag("", "--run", "measure this finished distillation run's students (and its teacher) instead "
                           "of training them; its config replaces the preset and the flags, except --device (every "
                           "--seeds value then measures the same students again)", "RUN_ID")
    power_watts: float | None = flag(None, "--power", "estimate energy from this power instead of CodeCarbon "
                                     "(measured where possible)", "WATTS")
    quantize: bool = flag(True, "--no-quantize", "do not measure the KD student in int8")
    batch_sizes: tuple[int, int] = (1, 256)
    min_run_time: float = flag(0.2, "--min-run-time", "seconds per timing (default {default}; the energy window is "
                               "5 × it, at most 10 s)", "SECONDS")


def default_config() -> CompressionConfig:
    """The lecture preset (its teacher is the app's default teacher, 784-1200-1200-10 on mnist5k; its 800×2
    students train in 12-15 s), the students trained first, energy from CodeCarbon. The whole default takes ≈30 s on
    one thread of a 2-core machine with the teacher cached (docs/experiments/COMPRESSION.md)."""
    from kdviz.core.presets import get_preset

    return CompressionConfig(get_preset("lecture"))


def _no_run(run_id) -> str:
    return f"there is no finished run {run_id!r} with trained students on this server"


def check(config: CompressionConfig) -> CompressionConfig:
    """ValueError (one line, naming the value) for a bad power, batch size, time or run id."""
    from kdviz.core.checkpoints import is_valid_run_id
    from kdviz.core.energy import check_batch_size, check_power, check_seconds

    check_config(config.distill)
    if config.power_watts is not None:
        check_power(config.power_watts)
    if not (isinstance(config.batch_sizes, tuple) and len(config.batch_sizes) == 2):
        raise ValueError(f"batch sizes must be a pair (small, large) of integers, got {config.batch_sizes!r}")
    for size in config.batch_sizes:
        check_batch_size(size)
    check_seconds(config.min_run_time)
    if not isinstance(config.quantize, bool):
        raise ValueError(f"quantize must be True or False, got {config.quantize!r}")
    if not isinstance(config.source_run, str):
        raise ValueError(f"the source run must be a run id, got {config.source_run!r}")
    if config.source_run and not is_valid_run_id(config.source_run):
        raise ValueError(f"not a run id: {config.source_run!r} (run ids look like 20250101-120000-a1b2c3)")
    return config


def config_for_run(run_id: str) -> CompressionConfig:
    """The config that measures a finished distillation run's students: its DistillConfig, source_run = run_id.
    ValueError when the server has no such run with trained students (an experiment's run has none)."""
    from kdviz.core.checkpoints import is_valid_run_id, read_run_config, students_path
    from kdviz.core.engine import config_from_dict

    if not (isinstance(run_id, str) and is_valid_run_id(run_id)) or not students_path(run_id).is_file():
        raise ValueError(_no_run(run_id))
    record = read_run_config(run_id)
    if record is None or "experiment" in record:
        raise ValueError(_no_run(run_id))
    try:
        distill_config = config_from_dict(record)
    except ValueError:
        raise ValueError(_no_run(run_id)) from None
    return check(CompressionConfig(distill_config, source_run=run_id))


def load_source_students(config: CompressionConfig) -> dict[str, nn.Module]:
    """The source run's trained students {"hard", "kd"} (on the CPU); ValueError if the run is missing, or distilled
    another teacher than config.distill.teacher (the one measured beside them) or other students than
    config.distill.student (the spec that names them)."""
    from kdviz.core.checkpoints import load_students, students_path

    path = students_path(config.source_run)
    if not path.is_file():
        raise ValueError(_no_run(config.source_run))
    try:
        run_config, students = load_students(path)
    except Exception as error:  # noqa: BLE001 — a corrupt file is a missing run, said in one line
        raise ValueError(f"{_no_run(config.source_run)} (its students cannot be read: {error})") from None
    if (run_config.teacher, run_config.student) != (config.distill.teacher, config.distill.student):
        raise ValueError(f"run {config.source_run} distilled another teacher or student than this config's: build "
                         f"the config with config_for_run({config.source_run!r})")
    return students


# ---- measuring one model ---------------------------------------------------------------------------------------

def disk_bytes(model: nn.Module) -> int:
    """Bytes of torch.save(state_dict): the checkpoint on disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())


def stored_bytes(model: nn.Module) -> int:
    """The weights in memory: models.size_bytes (parameters and buffers), plus the packed weights and biases of
    dynamically quantised Linear layers, which are neither (int8 weights: 1 byte each)."""
    from kdviz.core.models import size_bytes

    total = size_bytes(model)
    for module in model.modules():
        if hasattr(module, "_packed_params") and callable(getattr(module, "weight", None)):
            weight, bias = module.weight(), module.bias()
            total += weight.numel() * weight.element_size()
            total += 0 if bias is None else bias.numel() * bias.element_size()
    return total


def _on(model: nn.Module, device: torch.device) -> nn.Module:
    """model on device: itself if already there, else a copy (a shared teacher is never moved)."""
    from kdviz.core.energy import model_device

    return model if model_device(model).type == device.type else copy.deepcopy(model).to(device)


def energy_seconds(config: CompressionConfig) -> float:
    """The energy window of each model: 5 × min_run_time, at most energy.MAX_ENERGY_SECONDS (10 s)."""
    from kdviz.core.energy import MAX_ENERGY_SECONDS

    return min(ENERGY_WINDOW_FACTOR * config.min_run_time, MAX_ENERGY_SECONDS)


def power_source(config: CompressionConfig):
    """FixedPower(power_watts) when given, else CodeCarbonSource()."""
    from kdviz.core.energy import CodeCarbonSource, FixedPower

    return CodeCarbonSource() if config.power_watts is None else FixedPower(config.power_watts)


def measure_model(name: str, role: str, model: nn.Module, dataset, config: CompressionConfig, source,
                  flops_model: nn.Module | None = None) -> dict:
    """One row (ROW_KEYS) for model, on the config's device (the CPU for the int8 model): sizes, FLOPs per image
    (counted on flops_model when given: the float model an int8 one came from), latency, throughput, energy per
    prediction from source, and test and validation accuracy."""
    from kdviz.core.budget import forward_flops
    from kdviz.core.energy import batch_of, energy_per_prediction, model_device, time_inference
    from kdviz.core.engine import accuracy, resolve_device
    from kdviz.core.models import count_parameters

    device = torch.device("cpu") if role == "kd_int8" else resolve_device(config.distill.device)
    model = _on(model, device).eval()
    counted = flops_model if flops_model is not None else model
    flops = forward_flops(counted, dataset.test_x[:1].to(model_device(counted)))
    small, large = config.batch_sizes
    example = batch_of(dataset.test_x, large).to(device)
    timing = time_inference(model, example, config.batch_sizes, config.min_run_time)
    energy = energy_per_prediction(model, example, source, energy_seconds(config))
    row = {"name": name, "role": role, "params": count_parameters(counted), "size_bytes": stored_bytes(model),
           "disk_bytes": disk_bytes(model), "flops_per_image": flops,
           "latency_ms_batch1": timing.latency_ms[small], "latency_ms_batch256": timing.latency_ms[large],
           "throughput_per_s": timing.throughput_per_s,
           "accuracy": accuracy(model, dataset.test_x.to(device), dataset.test_y.to(device)),
           "val_accuracy": accuracy(model, dataset.val_x.to(device), dataset.val_y.to(device)),
           **{key: energy[key] for key in ("energy_j_per_prediction", "energy_j_per_million", "energy_measured",
                                           "power_watts", "power_source")},
           "energy_other_trainings": energy["other_trainings"]}
    return {key: row[key] for key in ROW_KEYS}


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of model with its Linear layers dynamically quantised to int8 (on the CPU; warnings silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear},
                                                      dtype=torch.qint8)


def _int8_plan(config: CompressionConfig, kd: nn.Module) -> tuple[nn.Module | None, str]:
    """(the int8 KD student, "") or (None, why it is skipped)."""
    from kdviz.core.engine import resolve_device

    device = resolve_device(config.distill.device)
    if device.type != "cpu":
        return None, (f"the int8 KD student is measured on the CPU only (PyTorch's dynamic quantisation has no "
                      f"{device.type} kernels): skipped on {device.type}")
    if not any(isinstance(m, nn.Linear) for m in kd.modules()):
        return None, "the KD student has no Linear layers to quantise: no int8 model"
    try:
        return quantize_int8(kd), ""
    except Exception as error:  # noqa: BLE001 — quantisation must never end the run
        return None, f"quantising the KD student to int8 failed ({type(error).__name__}: {error}); no int8 model"


# ---- the case study --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _case_study() -> tuple:
    import torchvision
    from torchvision import models as tv_models

    from kdviz.core.budget import forward_flops

    rows = []
    for role, name, arch, weights_enum in CASE_STUDY:
        with torch.device("meta"):  # no weights, no memory, no download
            model = getattr(torchvision.models, arch)()
            x = torch.empty((1, 3, 224, 224))
        meta = getattr(tv_models, weights_enum)[CASE_WEIGHTS].meta
        rows.append({"name": name, "arch": arch, "role": role, "params": sum(p.numel() for p in model.parameters()),
                     "gflops_224": forward_flops(model, x) / 1e9, "torchvision_gmacs": float(meta["_ops"]),
                     "imagenet_top1": float(meta["_metrics"]["ImageNet-1K"]["acc@1"]), "weights": CASE_WEIGHTS})
    return tuple(rows)


def case_study() -> list[dict]:
    """ResNet-152 (teacher) and ResNet-50 (student): params and GFLOPs at 224×224 counted live on the meta device,
    torchvision's GMACs and ImageNet top-1 of the IMAGENET1K_V1 weights from their metadata (nothing downloaded).
    Cached (≈1 s the first time); each call returns fresh dicts."""
    return [dict(row) for row in _case_study()]


def lecture_numbers() -> dict:
    """The lecture's ImageNet top-1 for its case (ResNet-152 teacher, ResNet-50 students), as quoted there."""
    return {"teacher_top1": "≈78", "student_hard_top1": 76.32, "student_kd_top1": 77.75,
            "source": "quoted from the lecture"}


def size_ratio(rows: list[dict] | None = None) -> float:
    """The case study's teacher parameters / student parameters (ResNet-152 / ResNet-50 ≈ 2.36)."""
    rows = case_study() if rows is None else rows
    by_role = {row["role"]: row for row in rows}
    return by_role["teacher"]["params"] / by_role["student"]["params"]


# ---- the run ---------------------------------------------------------------------------------------------------

def run(config: CompressionConfig, teacher: nn.Module, should_stop: StopCheck | None = None) -> Iterator:
    """Train the students (distill's Notice and Diverged events pass through) or load the source run's, then yield
    Measured(done, total, row) for the teacher, the hard-label student, the KD student and its int8 copy in turn,
    then Finished with {"models", "case_study", "lecture", "size_ratio", "device", "threads", "source_run",
    "seconds", "batch_sizes", "dataset"}. A stop between two models keeps the rows measured ("cancelled"); a
    training that does not complete ends the run with its status and no rows."""
    from kdviz.core.data import load_dataset
    from kdviz.core.engine import configure_threads, resolve_device
    from kdviz.core.models import ModelSpec

    check(config)
    started = time.perf_counter()
    device, threads = resolve_device(config.distill.device), configure_threads()
    rows, status = [], "completed"

    def finished(state: str) -> Finished:
        cases = case_study()
        return Finished(state, {"models": rows, "case_study": cases, "lecture": lecture_numbers(),
                                "size_ratio": size_ratio(cases), "device": str(device), "threads": threads,
                                "source_run": config.source_run, "seconds": time.perf_counter() - started,
                                "batch_sizes": list(config.batch_sizes), "dataset": config.distill.dataset})

    if config.source_run:
        students = load_source_students(config)
    else:
        trained = None
        for event in distill(config.distill, teacher, should_stop):
            if isinstance(event, Finished):
                trained = event
            elif isinstance(event, (Notice, Diverged, EpochEnd)):  # EpochEnd: progress while training
                yield event
        if trained is None or trained.status != "completed":
            yield finished(trained.status if trained is not None else "cancelled")
            return
        students = trained.models
    dataset = load_dataset(config.distill.dataset)
    shape, classes = dataset.input_shape, dataset.num_classes
    plan = [("teacher", teacher.eval(), None, config.distill.teacher.model),
            ("hard", students["hard"], None, config.distill.student),
            ("kd", students["kd"], None, config.distill.student)]
    if config.quantize:
        int8, why = _int8_plan(config, students["kd"])
        if int8 is None:
            yield Notice(why)
        else:
            plan.append(("kd_int8", int8, students["kd"], config.distill.student))
    source = power_source(config)
    for done, (role, model, flops_model, spec) in enumerate(plan, 1):
        if should_stop is not None and should_stop():
            status = "cancelled"
            break
        name = f"{LABELS[role]} ({ModelSpec.describe(spec, shape, classes)})"
        if role != "kd_int8":
            row = measure_model(name, role, model, dataset, config, source)
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    row = measure_model(name, role, model, dataset, config, source, flops_model=flops_model)
            except Exception as error:  # noqa: BLE001 — the int8 model must never end the run
                yield Notice(f"measuring the int8 KD student failed ({type(error).__name__}: {error}); no row")
                continue
        rows.append(row)
        yield Measured(done, len(plan), row)
    yield finished(status)


# ---- the experiment's contract (kdviz.experiments): budget, command-line options, report -----------------------

def budget_configs(config: CompressionConfig) -> list[DistillConfig]:
    """The trainings it does: the students' distillation, or none when it measures a finished run's students."""
    return [] if config.source_run else [config.distill]


def config_from_flags(given: dict, distill_config: DistillConfig | None,
                      device: str | None = None) -> CompressionConfig:
    """kdviz.experiments.config_from_flags, but --run's config replaces the preset and its flags, all but the
    device the user gave (device: --device, None when not given)."""
    base = default_config()
    if given.get("source_run"):
        base = config_for_run(given["source_run"])
        if device is not None:
            base = dataclasses.replace(base, distill=dataclasses.replace(base.distill, device=device))
    elif distill_config is not None:
        base = dataclasses.replace(base, distill=distill_config)
    return check(dataclasses.replace(base, **given))


def _mean_rows(runs: list[dict]) -> list[dict]:
    """Per role over the runs (seeds): the first run's row with MEAN_KEYS averaged, energy_measured only if every
    run measured it, and n_seeds."""
    out = []
    for role in ROLES:
        rows = [row for result in runs for row in result.get("models") or [] if row["role"] == role]
        if not rows:
            continue
        row = dict(rows[0])
        for key in MEAN_KEYS:
            row[key] = sum(r[key] for r in rows) / len(rows)
        row["energy_measured"] = all(r["energy_measured"] for r in rows)
        row["energy_other_trainings"] = max(shared(r) for r in rows)
        row["n_seeds"] = len(rows)
        out.append(row)
    return out


def _ratio(before, after) -> float | None:
    if before is None or after is None or not (after > 0) or not math.isfinite(before / after):
        return None
    return before / after


def report(config: CompressionConfig, runs: list[dict]) -> dict:
    """The JSON of `python -m kdviz experiment compression`: runs is [{"seed", "status", **Finished.summary}] (the
    CLI's --seeds trains one student pair per seed). "models" are per role the means over the runs of the timings,
    energies and accuracies (sizes and FLOPs do not depend on the seed; n_seeds says how many), "runs" each run's
    rows; "savings" is teacher ÷ KD student for parameters, FLOPs, latency at batch 1 and energy per prediction.
    With a source run every seed measures the same students: the means are then of repeated measurements."""
    models = _mean_rows(runs)
    cases = next((r["case_study"] for r in runs if r.get("case_study")), None) or case_study()
    by_role = {row["role"]: row for row in models}
    teacher, kd = by_role.get("teacher"), by_role.get("kd")

    def saving(key):
        return _ratio(teacher[key], kd[key]) if teacher and kd else None

    savings = {"params": saving("params"), "flops": saving("flops_per_image"),
               "latency": saving("latency_ms_batch1"), "energy": saving("energy_j_per_prediction")}
    return {"experiment": NAME, "models": models, "case_study": cases, "lecture": lecture_numbers(),
            "size_ratio": size_ratio(cases), "savings": savings, "runs": runs}


def _times(ratio: float | None, less: str, more: str) -> str:
    if ratio is None:
        return f"an unknown factor {less}"
    if ratio >= 1:
        return f"{ratio:.1f}× {less}"
    return f"{1 / ratio:.1f}× {more}"


def _joules(value: float) -> str:
    """0.115 mJ, 2.4 µJ, 380 nJ."""
    for unit, size in (("J", 1.0), ("mJ", 1e-3), ("µJ", 1e-6)):
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value / 1e-9:.3g} nJ"


def shared(row: dict) -> int:
    """How many other trainings stepped while the row's energy was measured (0 for rows recorded before it was)."""
    return int(row.get("energy_other_trainings") or 0)


def shared_warning(models: list[dict]) -> str:
    """One sentence when any energy figure was shared with other runs training meanwhile, else ""."""
    most = max((shared(row) for row in models), default=0)
    if not most:
        return ""
    return (f"Energy shared with {most} other run{'s' * (most > 1)} training on this server meanwhile: not this "
            "student's own energy (their CPU time is in the reading); measure again when the server is quiet.")


def _kind(row: dict) -> str:
    return "measured" if row["energy_measured"] else "estimated"


def _energy_source(row: dict) -> str:
    """The energy's source in words, starting with whether it was measured or estimated."""
    source = row["power_source"]
    return source if source.startswith(("measured", "estimated", "GPU measured")) else f"{_kind(row)}: {source}"


def verdict(result: dict) -> str:
    """Plain sentences: what the KD student saves against the teacher, what int8 adds, and the lecture's case."""
    from kdviz.core.budget import format_bytes

    by_role = {row["role"]: row for row in result["models"]}
    teacher, kd = by_role.get("teacher"), by_role.get("kd")
    lines = []
    if teacher is None or kd is None:
        lines.append("Too little was measured to compare the KD student with the teacher.")
    else:
        savings = result["savings"]
        lines.append(
            f"The KD student has {_times(savings['params'], 'fewer', 'more')} parameters and "
            f"{_times(savings['flops'], 'fewer', 'more')} FLOPs per image than the teacher, answers "
            f"{_times(savings['latency'], 'faster', 'slower')} at batch 1 ({kd['latency_ms_batch1']:.3g} ms vs "
            f"{teacher['latency_ms_batch1']:.3g} ms) and handles "
            f"{_times(_ratio(kd['throughput_per_s'], teacher['throughput_per_s']), 'more', 'fewer')} images per "
            f"second at the large batch, uses ≈{_times(savings['energy'], 'less', 'more')} energy per prediction "
            f"({_joules(kd['energy_j_per_prediction'])} vs {_joules(teacher['energy_j_per_prediction'])}; "
            f"{_energy_source(kd)}); its test accuracy is {100 * kd['accuracy']:.2f} % vs the teacher's "
            f"{100 * teacher['accuracy']:.2f} %.")
    int8 = by_role.get("kd_int8")
    if int8 is not None and kd is not None:
        lines.append(
            f"Quantised to int8 (dynamic, Linear layers), the KD student's checkpoint is "
            f"{_times(_ratio(kd['disk_bytes'], int8['disk_bytes']), 'smaller', 'larger')} "
            f"({format_bytes(kd['disk_bytes'])} → {format_bytes(int8['disk_bytes'])}), it answers in "
            f"{int8['latency_ms_batch1']:.3g} ms at batch 1 and its test accuracy is {100 * int8['accuracy']:.2f} %.")
    cases = {row["role"]: row for row in result.get("case_study") or []}
    lecture = result.get("lecture") or lecture_numbers()
    if "teacher" in cases and "student" in cases:
        t, s = cases["teacher"], cases["student"]
        lines.append(
            f"The lecture's case: {t['name']} → {s['name']} is {result['size_ratio']:.2f}× fewer parameters (more "
            f"than a factor of two) and {t['gflops_224'] / s['gflops_224']:.1f}× fewer FLOPs at 224×224; "
            f"{lecture['source']}, the students reach {lecture['student_hard_top1']} % (hard labels) and "
            f"{lecture['student_kd_top1']} % (KD) ImageNet top-1 against the teacher's {lecture['teacher_top1']} %.")
    return " ".join(lines)


def _flops(count: float) -> str:
    from kdviz.core.budget import format_flops

    return format_flops(count)


def format_text(result: dict) -> str:
    """The models' table, the energy's source, the case study with the lecture's numbers, and the verdict."""
    from kdviz.core.budget import format_bytes

    models = result["models"]
    n = max((row.get("n_seeds", 1) for row in models), default=1)
    small, large = next((r["batch_sizes"] for r in result.get("runs") or [] if r.get("batch_sizes")), (1, 256))
    header = (f"{'model':<44}{'params':>11}{'memory':>10}{'disk':>10}{'FLOPs/img':>12}{f'ms b{small}':>9}"
              f"{f'ms b{large}':>9}{'images/s':>11}{'J/pred':>10}{'J/million':>11}{'test %':>8}{'val %':>8}")
    lines = [f"inference{' (means over ' + str(n) + ' seeds)' if n > 1 else ''}: params, weights in memory and on "
             f"disk, FLOPs per image, median latency at batch {small} / {large}, throughput and energy per "
             f"prediction at batch {large}",
             header, "-" * len(header)]
    for row in models:
        lines.append(f"{row['name']:<44}{row['params']:>11,}{format_bytes(row['size_bytes']):>10}"
                     f"{format_bytes(row['disk_bytes']):>10}{_flops(row['flops_per_image']):>12}"
                     f"{row['latency_ms_batch1']:>9.3f}{row['latency_ms_batch256']:>9.3f}"
                     f"{row['throughput_per_s']:>11,.0f}{row['energy_j_per_prediction']:>10.2e}"
                     f"{row['energy_j_per_million']:>11.3g}{100 * row['accuracy']:>8.2f}"
                     f"{100 * row['val_accuracy']:>8.2f}")
    for source in dict.fromkeys(row["power_source"] for row in models):
        same = [row for row in models if row["power_source"] == source]
        watts = sum(row["power_watts"] for row in same) / len(same)
        lines.append(f"energy per prediction: {_energy_source(same[0])}; ≈{watts:.1f} W while the models ran "
                     "(RAM left out: CodeCarbon's is a flat estimate per GB)")
    if any(row["role"] == "kd_int8" for row in models):
        lines.append("int8: FLOPs and parameters are the float KD student's (FlopCounterMode does not see "
                     "quantised ops); latency and energy measured on the CPU")
    cases = result.get("case_study") or []
    if cases:
        lecture = result.get("lecture") or lecture_numbers()
        head = f"{'case study':<14}{'params':>13}{'GFLOPs@224':>12}{'torchvision GMACs':>19}{'ImageNet top-1':>16}"
        lines += ["", f"case study (torchvision, built on the meta device; top-1 from the {CASE_WEIGHTS} weights' "
                      "metadata, nothing downloaded)", head, "-" * len(head)]
        for row in cases:
            lines.append(f"{row['name']:<14}{row['params']:>13,}{row['gflops_224']:>12.2f}"
                         f"{row['torchvision_gmacs']:>19.3f}{row['imagenet_top1']:>16.3f}")
        lines.append(f"size ratio {result['size_ratio']:.2f}× (more than a factor of two). {lecture['source']}: "
                     f"teacher {lecture['teacher_top1']} %, student (hard labels) {lecture['student_hard_top1']} %, "
                     f"student (KD) {lecture['student_kd_top1']} % top-1")
    warning = shared_warning(models)
    lines += ["", verdict(result)] + ([warning] if warning else [])
    return "\n".join(lines)
