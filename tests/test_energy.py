"""Time and energy of inference (kdviz.core.energy): power sources, energy per prediction, timings, refusals."""
from __future__ import annotations

import math
import os
import tempfile
import time
import types

import pytest
import torch
from torch import nn

from kdviz.core import energy
from kdviz.core.energy import CodeCarbonSource, FixedPower, Reading, energy_per_prediction, time_inference


def tiny_model() -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model


def batch(n: int = 32) -> torch.Tensor:
    return torch.randn((n, 1, 8, 8), generator=torch.Generator().manual_seed(1))


class FakeSource:
    """The power-source interface with a known reading: 12 J over 2 s, "measured" by a fake meter."""

    def __init__(self):
        self.predictions = None
        self.device = None

    def measure(self, work, device="cpu") -> Reading:
        self.predictions, self.device = work(), device
        return Reading(12.0, 2.0, True, 6.0, "measured by a fake meter")


# ---- power sources ---------------------------------------------------------------------------------------------

def test_fixed_power_is_watts_times_seconds():
    reading = FixedPower(7.5).measure(lambda: time.sleep(0.05))
    assert reading.seconds >= 0.05
    assert reading.joules == pytest.approx(7.5 * reading.seconds)
    assert reading.watts == 7.5 and reading.measured is False
    assert reading.source == "estimated from 7.5 W × time (the power you entered)"
    assert "a laptop" in FixedPower(30, source="a laptop").measure(lambda: None).source


def test_a_power_source_flows_through_to_joules_per_prediction():
    fake = FakeSource()
    x = batch(32)
    result = energy_per_prediction(tiny_model(), x, fake, min_seconds=0.02)
    assert fake.device == "cpu"
    assert result["predictions"] == fake.predictions and result["predictions"] % 32 == 0
    assert result["predictions"] >= 32
    assert result["energy_j_per_prediction"] == pytest.approx(12.0 / fake.predictions)
    assert result["energy_j_per_million"] == pytest.approx(12.0 / fake.predictions * 1e6)
    assert result["energy_measured"] is True
    assert result["power_watts"] == pytest.approx(6.0) and result["seconds"] == 2.0
    assert result["power_source"] == "measured by a fake meter"


def test_energy_runs_for_at_least_min_seconds_and_leaves_the_model_as_it_was():
    model = tiny_model().train()
    started = time.perf_counter()
    result = energy_per_prediction(model, batch(8), FixedPower(10), min_seconds=0.05)
    assert time.perf_counter() - started >= 0.05 and result["seconds"] >= 0.05
    assert result["energy_j_per_prediction"] == pytest.approx(10 * result["seconds"] / result["predictions"])
    assert result["energy_measured"] is False and model.training


@pytest.mark.parametrize("watts, shown", [(-5, "got -5"), (0, "got 0"), (float("nan"), "got nan"),
                                          (float("inf"), "got inf"), ("abc", "got 'abc'"), (True, "got True"),
                                          (None, "got None")])
def test_bad_power_is_a_one_line_value_error_naming_it(watts, shown):
    with pytest.raises(ValueError) as error:
        FixedPower(watts)
    message = str(error.value)
    assert message == f"power must be a finite number of watts > 0, {shown}" and "\n" not in message
    with pytest.raises(ValueError, match="power must be"):
        energy.check_power(watts)


@pytest.mark.parametrize("call, message", [
    (lambda: time_inference(tiny_model(), batch(), (0, 4), 0.02), r"batch sizes must be integers in \[1, 4096\], "
                                                                  r"got 0"),
    (lambda: time_inference(tiny_model(), batch(), (1, 5000), 0.02), "got 5000"),
    (lambda: time_inference(tiny_model(), batch(), (1, 4), 0), r"min run time must be a number of seconds in "
                                                               r"\(0, 10\], got 0"),
    (lambda: energy_per_prediction(tiny_model(), batch(), FixedPower(1), min_seconds=-1), "got -1"),
    (lambda: energy.batch_of(torch.zeros((0, 1, 8, 8)), 4), "the example batch is empty"),
])
def test_bad_timing_input_is_a_one_line_value_error(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


def test_batch_of_cuts_or_repeats_the_example():
    x = torch.arange(3.0).reshape(3, 1)
    assert energy.batch_of(x, 2).flatten().tolist() == [0.0, 1.0]
    assert energy.batch_of(x, 7).flatten().tolist() == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]


# ---- time ------------------------------------------------------------------------------------------------------

def test_time_inference_gives_positive_finite_latencies_and_throughput():
    model = tiny_model().train()
    timing = time_inference(model, batch(16), batch_sizes=(1, 64), min_run_time=0.02)
    assert set(timing.latency_ms) == {1, 64}
    for value in timing.latency_ms.values():
        assert math.isfinite(value) and value > 0
    assert math.isfinite(timing.throughput_per_s) and timing.throughput_per_s > 0
    assert timing.throughput_per_s == pytest.approx(64 / (timing.latency_ms[64] / 1000))
    assert timing.device == "cpu" and timing.threads == energy.thread_count()
    assert model.training, "the model's mode is restored"


# ---- CodeCarbon ------------------------------------------------------------------------------------------------

def test_codecarbon_reads_a_finite_energy_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lock = os.path.join(tempfile.gettempdir(), ".codecarbon.lock")
    had_lock = os.path.exists(lock)
    fake_work_done = []

    def work():
        started = time.perf_counter()
        while time.perf_counter() - started < 0.2:
            sum(range(1000))
        fake_work_done.append(True)

    reading = CodeCarbonSource().measure(work)
    assert fake_work_done == [True]
    assert math.isfinite(reading.joules) and reading.joules >= 0
    assert math.isfinite(reading.seconds) and reading.seconds > 0
    assert reading.watts == pytest.approx(reading.joules / reading.seconds)
    assert "CodeCarbon" in reading.source
    if not os.path.exists("/sys/class/powercap"):  # no RAPL counters here: CodeCarbon can only estimate
        assert reading.measured is False and reading.source.startswith("estimated")
    assert list(tmp_path.iterdir()) == [], "CodeCarbon wrote into the working directory"
    assert os.path.exists(lock) == had_lock, "CodeCarbon left a lock file"


def hardware(kind: str, **attributes):
    return type(kind, (), attributes)()


def test_the_trackers_facts_are_read_defensively():
    rapl = types.SimpleNamespace(_hardware=[hardware("RAM"), hardware("CPU", _mode="intel_rapl")])
    assert energy.describe_tracker(rapl, "3.3.2") == (
        True, "measured by CodeCarbon 3.3.2 from the CPU package's RAPL counters")
    load = types.SimpleNamespace(_hardware=[hardware("CPU", _mode="cpu_load", _model="AMD EPYC", _tdp=8)])
    assert energy.describe_tracker(load, "3.3.2") == (
        False, "estimated by CodeCarbon 3.3.2 from this process's CPU load × TDP 8 W of 'AMD EPYC' (no RAPL "
               "counters readable here)")
    measured, text = energy.describe_tracker(types.SimpleNamespace(_hardware=[hardware("CPU")]), "9")
    assert not measured and "could not be read" in text
    measured, text = energy.describe_tracker(object(), "9")  # nothing readable at all
    assert not measured and text.startswith("estimated") and "no CPU tracker" in text
    on_gpu = types.SimpleNamespace(_hardware=[hardware("CPU", _mode="intel_rapl"), hardware("GPU")])
    assert energy.describe_tracker(on_gpu, "3.3.2", on_gpu=True)[0] is True
    without_nvml = types.SimpleNamespace(_hardware=[hardware("CPU", _mode="intel_rapl")])
    measured, text = energy.describe_tracker(without_nvml, "3.3.2", on_gpu=True)
    assert not measured and "GPU's energy is missing" in text


def test_without_codecarbon_the_reading_is_a_labelled_estimate(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_codecarbon(name, *args, **kwargs):
        if name == "codecarbon" or name.startswith("codecarbon."):
            raise ImportError("No module named 'codecarbon'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_codecarbon)
    reading = CodeCarbonSource().measure(lambda: time.sleep(0.01))
    assert reading.measured is False and reading.watts == energy.FALLBACK_WATTS
    assert reading.joules == pytest.approx(energy.FALLBACK_WATTS * reading.seconds)
    assert reading.source.startswith("estimated from a nominal 10 W") and "not installed" in reading.source
