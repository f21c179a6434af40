"""Time and energy of inference: latency and throughput of a model, and the energy of one prediction.

Time (time_inference) is measured with torch.utils.benchmark.Timer, the library made for it: it warms up while it
chooses how many calls to time in a block (that warm-up is not counted), synchronises CUDA around every block and runs
at a fixed thread count (kdviz's, thread_count(), so the numbers match a training run's). Latency is the median of
the blocks' times per call, at batch 1 and at a large batch; throughput is the large batch divided by its median.

Energy (energy_per_prediction) runs the model on one batch again and again for at least min_seconds inside a power
source's measurement and divides the joules by the predictions made. A power source has one method,
measure(work, device), which runs work() (the model on `device`) and returns a Reading; there are two, and tests
inject their own:

* CodeCarbonSource (the default): CodeCarbon 3.3.2's OfflineEmissionsTracker, the field's standard tracker. It reads
  real energy counters where the machine has them — Intel/AMD RAPL under /sys/class/powercap on Linux, Intel Power
  Gadget or powermetrics on a Mac, NVIDIA's NVML for a CUDA GPU — and otherwise falls back on a documented estimate:
  the CPU load of this process × the CPU's TDP from its database. A Reading is `measured` only when every part it
  adds up was read from counters (the CPU through RAPL, Power Gadget or powermetrics, and on CUDA also the GPU through
  NVML); its `source` says which, e.g. "estimated by CodeCarbon 3.3.2 from this process's CPU load × TDP 8 W of
  'AMD EPYC' (no RAPL counters readable here)" on a machine without /sys/class/powercap. Nothing is written (no CSV,
  no API, no lock file: output_methods=[], allow_multiple_runs=True, output_dir a temporary folder) and nothing
  touches the network (the offline tracker, a fixed country). If CodeCarbon cannot run or its facts cannot be read,
  the reading falls back on an estimate from FALLBACK_WATTS and its source says so.
* FixedPower(watts): an estimate, joules = watts × seconds of the work, from a power the user enters (a laptop's
  CPU package under load is some 15–45 W, a server GPU 300–700 W).

What the numbers include, and what not:

* The energy is the CPU's plus, for a model on CUDA, the GPU's (CodeCarbon's cpu_energy + gpu_energy; a model on
  the CPU leaves the GPU out, whose NVML counter would add its idle power). RAM is left out: CodeCarbon's RAM
  power is a flat estimate per GB of installed memory, the same whatever model runs, so it would only add a constant
  that hides the difference between the teacher and the student.
* The estimate from CPU load (tracking_mode="process") counts the CPU time of this whole process: in the app's server
  that includes every other run training in another thread meanwhile. energy_per_prediction therefore records how many
  trainings took a step during its measurement (kdviz.core.activity), "other_trainings": above 0 the figure is shared
  with those runs, not the student's own, and the page and the CLI say so.
* RAPL counts the whole CPU package (every process on it, idle power included), and NVML the whole GPU: a measured
  reading is an upper bound for the model on a busy machine.
"""
from __future__ import annotations

import logging
import math
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from kdviz.core.activity import watch
from kdviz.core.engine import configure_threads, thread_count

FALLBACK_WATTS = 10.0  # the power assumed when CodeCarbon cannot say anything (say so in the reading's source)
MEASURED_CPU_MODES = ("intel_rapl", "intel_power_gadget", "apple_powermetrics", "windows_emi")
MAX_ENERGY_SECONDS = 10.0  # the longest energy window energy_per_prediction accepts
# CodeCarbon's interval between energy reads: longer than any window here, so it reads the counters (or integrates
# its load samples, taken every second) once, from start() to stop(). A periodic read still running when stop() reads
# again (CodeCarbon 3.3.2's Timer.cancel does not wait for it) makes stop() multiply a power sampled over a few
# milliseconds (CPU times tick in 10 ms: tens of watts) by a whole interval: on 1-second windows that inflated the
# energy 3-6× here.
CODECARBON_MEASURE_SECS = 60.0
JOULES_PER_KWH = 3.6e6


# ---- time ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Timing:
    """Latency (median ms per call) at each batch size, and throughput (images/s) at the largest."""

    latency_ms: dict  # {batch size: median milliseconds per forward pass}
    throughput_per_s: float  # largest batch / its median time
    device: str
    threads: int


def model_device(model: nn.Module) -> torch.device:
    """Where the model's weights are (CPU for a model without any, e.g. a dynamically quantised one)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def batch_of(x: torch.Tensor, size: int) -> torch.Tensor:
    """`size` rows of x: its first rows, repeated when x has fewer."""
    if len(x) == 0:
        raise ValueError("the example batch is empty: give at least one input")
    if len(x) >= size:
        return x[:size]
    repeats = math.ceil(size / len(x))
    return x.repeat(repeats, *([1] * (x.ndim - 1)))[:size]


def check_batch_size(size) -> int:
    if not (isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= 4096):
        raise ValueError(f"batch sizes must be integers in [1, 4096], got {size!r}")
    return size


def check_seconds(seconds, what: str = "min run time") -> float:
    if not (isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds)
            and 0 < seconds <= MAX_ENERGY_SECONDS):
        raise ValueError(f"{what} must be a number of seconds in (0, {MAX_ENERGY_SECONDS:g}], got {_shown(seconds)}")
    return float(seconds)


def _benchmark_timer():
    """torch.utils.benchmark.Timer, imported without the warning its C++ half logs on a machine without a CUDA
    toolkit ("No CUDA runtime is found"): Python statements are timed here, nothing is compiled."""
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        from torch.utils.benchmark import Timer
    finally:
        quiet.setLevel(level)
    return Timer


def time_inference(model: nn.Module, example_batch: torch.Tensor, batch_sizes: tuple[int, ...] = (1, 256),
                   min_run_time: float = 0.2) -> Timing:
    """Median latency of model at each batch size (inputs cut or repeated from example_batch), timed with
    torch.utils.benchmark.Timer's blocked_autorange(min_run_time) in eval mode under torch.inference_mode(), on the
    model's device with kdviz's thread count; throughput at the largest batch size."""
    Timer = _benchmark_timer()
    for size in batch_sizes:
        check_batch_size(size)
    if not batch_sizes:
        raise ValueError("give at least one batch size")
    check_seconds(min_run_time)
    device, threads = model_device(model), thread_count()
    was_training = model.training
    model.eval()
    latency = {}
    try:
        with torch.inference_mode():
            for size in batch_sizes:
                x = batch_of(example_batch, size).to(device)
                timer = Timer("model(x)", globals={"model": model, "x": x}, num_threads=threads)
                latency[size] = timer.blocked_autorange(min_run_time=min_run_time).median * 1000.0
    finally:
        model.train(was_training)
    largest = max(batch_sizes)
    return Timing(latency, largest / (latency[largest] / 1000.0), str(device), threads)


# ---- power sources ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """The energy of one piece of work: joules over seconds, read from counters (measured) or estimated."""

    joules: float
    seconds: float
    measured: bool
    watts: float  # joules / seconds
    source: str  # how the joules were obtained, in words


def _shown(value) -> str:
    """A value as a message shows it: numbers as written (-5, nan, 0.5), anything else as its repr ('abc')."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}"
    return repr(value)


def check_power(watts) -> float:
    """watts as a float; ValueError (one line, naming the value) unless a finite number > 0."""
    if not (isinstance(watts, (int, float)) and not isinstance(watts, bool) and math.isfinite(watts) and watts > 0):
        raise ValueError(f"power must be a finite number of watts > 0, got {_shown(watts)}")
    return float(watts)


class FixedPower:
    """An estimate from a power you know or assume: joules = watts × the work's wall-clock seconds."""

    def __init__(self, watts: float, source: str = "the power you entered"):
        self.watts = check_power(watts)
        self.source = source

    def measure(self, work: Callable[[], object], device: str = "cpu") -> Reading:
        started = time.perf_counter()
        work()
        seconds = time.perf_counter() - started
        return Reading(self.watts * seconds, seconds, False, self.watts,
                       f"estimated from {self.watts:g} W × time ({self.source})")


class CodeCarbonSource:
    """CodeCarbon's OfflineEmissionsTracker around the work: counters where readable, else its estimate (see the
    module's docstring); never writes a file or touches the network. The GPU's energy is added only when the work ran
    on CUDA (device): NVML counts the whole GPU, idle power included, which a CPU model does not use."""

    def __init__(self, measure_power_secs: float = CODECARBON_MEASURE_SECS, country_iso_code: str = "USA"):
        self.measure_power_secs = measure_power_secs
        self.country_iso_code = country_iso_code

    def measure(self, work: Callable[[], object], device: str = "cpu") -> Reading:
        on_gpu = torch.device(device).type == "cuda"
        try:
            import codecarbon
            from codecarbon import OfflineEmissionsTracker
        except ImportError as error:
            return _nominal(_timed(work), f"CodeCarbon is not installed ({error})")
        logging.getLogger("codecarbon").setLevel(logging.ERROR)  # after its import, which sets INFO
        with tempfile.TemporaryDirectory(prefix="kdviz-codecarbon-") as folder:
            try:  # CodeCarbon swallows most of its own errors: what it measured is checked below
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tracker = OfflineEmissionsTracker(
                        country_iso_code=self.country_iso_code, output_methods=[], emissions_endpoint=False,
                        output_dir=folder, log_level="error", measure_power_secs=self.measure_power_secs,
                        tracking_mode="process", allow_multiple_runs=True)
                    tracker.start()
            except Exception as error:  # noqa: BLE001 — an energy tracker must never end a run
                return _nominal(_timed(work), f"CodeCarbon could not start ({type(error).__name__}: {error})")
            try:
                work_seconds = _timed(work)
            finally:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        tracker.stop()
                except Exception:  # noqa: BLE001
                    pass
        data = getattr(tracker, "final_emissions_data", None)
        try:
            cpu_kwh = float(data.cpu_energy or 0.0)
            gpu_kwh = float(data.gpu_energy or 0.0) if on_gpu else 0.0
            seconds = float(data.duration)
        except (AttributeError, TypeError, ValueError):
            return _nominal(work_seconds, "CodeCarbon reported no energy")
        joules = (cpu_kwh + gpu_kwh) * JOULES_PER_KWH
        if not (math.isfinite(joules) and joules >= 0 and math.isfinite(seconds) and seconds > 0):
            return _nominal(work_seconds, f"CodeCarbon reported {joules:g} J over {seconds:g} s")
        measured, source = describe_tracker(tracker, getattr(codecarbon, "__version__", "?"), on_gpu)
        return Reading(joules, seconds, measured, joules / seconds, source)


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _nominal(seconds: float, reason: str) -> Reading:
    """The fallback when CodeCarbon cannot say anything: FALLBACK_WATTS × the work's seconds, saying why."""
    return Reading(FALLBACK_WATTS * seconds, seconds, False, FALLBACK_WATTS,
                   f"estimated from a nominal {FALLBACK_WATTS:g} W × time: {reason}")


def describe_tracker(tracker, version: str, on_gpu: bool = False) -> tuple[bool, str]:
    """(measured, source in words) from a stopped tracker's hardware. Private attributes (CPU._mode, _model, _tdp)
    are read defensively: whatever is missing makes the reading an estimate, and the text says so."""
    hardware = list(getattr(tracker, "_hardware", None) or [])
    names = [type(h).__name__ for h in hardware]
    cpu = next((h for h in hardware if type(h).__name__ in ("CPU", "AppleSiliconChip")), None)
    gpu_tracked = any(name == "GPU" for name in names)  # an NVIDIA GPU is tracked through NVML's energy counter
    mode = "apple_powermetrics" if type(cpu).__name__ == "AppleSiliconChip" else getattr(cpu, "_mode", None)
    cpu_measured = mode in MEASURED_CPU_MODES
    measured = cpu_measured and (gpu_tracked or not on_gpu)
    model, tdp = getattr(cpu, "_model", None), getattr(cpu, "_tdp", None)
    if cpu is None:
        cpu_text = f"no CPU tracker found (hardware: {', '.join(names) or 'none'})"
    elif cpu_measured:
        cpu_text = {"intel_rapl": "the CPU package's RAPL counters", "windows_emi": "the CPU's RAPL counters "
                    "(Windows EMI)", "intel_power_gadget": "Intel Power Gadget",
                    "apple_powermetrics": "powermetrics"}[mode]
    elif mode == "cpu_load" and isinstance(tdp, (int, float)):
        cpu_text = f"this process's CPU load × TDP {_shown(tdp)} W of {model!r} (no RAPL counters readable here)"
    elif mode == "constant" and isinstance(tdp, (int, float)):
        cpu_text = f"a constant half of TDP {_shown(tdp)} W of {model!r} (no RAPL counters, no CPU load readable)"
    else:
        cpu_text = f"CodeCarbon's CPU estimate (mode {mode!r}; its TDP could not be read)"
    if on_gpu and gpu_tracked:
        gpu_text = " + the GPU's NVML energy counter"
    elif on_gpu:
        gpu_text = " (the GPU's energy is missing: CodeCarbon found no NVML here)"
    else:
        gpu_text = ""
    verb = "measured" if measured else "GPU measured, CPU estimated" if on_gpu and gpu_tracked else "estimated"
    return measured, f"{verb} by CodeCarbon {version} from {cpu_text}{gpu_text}"


# ---- energy per prediction -------------------------------------------------------------------------------------

def energy_per_prediction(model: nn.Module, example_batch: torch.Tensor, source, min_seconds: float = 1.0) -> dict:
    """Run model on example_batch again and again for at least min_seconds inside source.measure (after one
    warm-up pass outside it) and divide: {"energy_j_per_prediction", "energy_j_per_million", "energy_measured",
    "power_watts" (the reading's joules / seconds), "power_source", "predictions", "seconds", "other_trainings" (the
    trainings of this process that took a step meanwhile: their CPU time is in a process-mode reading, and they slowed
    this work down, so above 0 the figure is not this model's own)}."""
    check_seconds(min_seconds, "the energy measurement's duration")
    configure_threads()  # kdviz's thread count, as the timings and the training use
    device = model_device(model)
    x = example_batch.to(device)
    was_training = model.training
    model.eval()
    count = 0

    def work() -> int:
        nonlocal count
        with torch.inference_mode():
            started = time.perf_counter()
            while True:
                model(x)
                count += len(x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if time.perf_counter() - started >= min_seconds:
                    break
        return count

    try:
        with torch.inference_mode():
            model(x)  # warm-up: the first call allocates and picks kernels
        with watch() as others:
            reading = source.measure(work, device=str(device))
    finally:
        model.train(was_training)
    per_prediction = reading.joules / count if count else float("nan")
    return {"energy_j_per_prediction": per_prediction, "energy_j_per_million": per_prediction * 1e6,
            "energy_measured": bool(reading.measured), "power_watts": reading.joules / reading.seconds
            if reading.seconds > 0 else float("nan"),
            "power_source": reading.source, "predictions": count, "seconds": reading.seconds,
            "other_trainings": others.count}
