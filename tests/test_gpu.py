"""The engine on CUDA: it completes, agrees with the CPU within noise, emits the CPU's event types, and its step loop
does not wait for the host every step. Marked `gpu`; skipped without a CUDA device.

Run on a GPU machine: KDVIZ_THREADS=1 python -m pytest -q -m gpu tests/test_gpu.py tests/test_engine.py
"""
from __future__ import annotations

import dataclasses
import json
import math
import warnings

import pytest
import torch

from kdviz.core.engine import (DeviceOptions, Diverged, DistillConfig, Finished, StepLosses, TeacherConfig, distill,
                               event_to_dict, run_to_end, train_teacher)
from kdviz.core.models import ModelSpec

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TEACHER = TeacherConfig("digits", ModelSpec("mlp", 64, 1), epochs=3, batch_size=64, augment=0)
CONFIG = DistillConfig(TEACHER, ModelSpec("mlp", 32, 1), temperature=4.0, alpha=0.7, epochs=3, batch_size=32,
                       learning_rate=1e-2, train_subset=400, device="cuda", probe_size=5)
CNN = dataclasses.replace(CONFIG, student=ModelSpec("cnn", 8, 2), augment=1)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDVIZ_HOME", str(tmp_path_factory.mktemp("gpu-home")))
        return run_to_end(train_teacher(TEACHER, "cpu")).models["teacher"]


def within_noise(a: float, b: float, n: int) -> bool:
    """Two accuracies on the same n test images agree within 3 standard errors of their difference (+ one image)."""
    p = (a + b) / 2
    return abs(a - b) <= 3 * math.sqrt(2 * p * (1 - p) / n) + 1 / n


def types(events) -> list[str]:
    return [type(event).__name__ for event in events]


def count_syncs(run) -> int:
    """How many times `run` made the host wait for the GPU (torch's sync debug mode, one warning per sync)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(warning.message) for warning in caught)


def test_a_tiny_distillation_on_cuda_completes_and_agrees_with_the_cpu(teacher):
    cuda, cpu = list(distill(CONFIG, teacher)), list(distill(dataclasses.replace(CONFIG, device="cpu"), teacher))
    assert types(cuda) == types(cpu)  # the same events in the same order: every step's StepLosses, then EpochEnd
    assert [e.step for e in cuda if isinstance(e, StepLosses)] == [e.step for e in cpu if isinstance(e, StepLosses)]
    finished = cuda[-1]
    assert finished.status == "completed" and finished.summary["device"].startswith("cuda")
    assert finished.summary["precision"] == "fp32"  # MLPs stay in fp32 (launch-bound: bf16 would not pay)
    n_test = finished.summary["n_test"]
    for role in ("hard", "kd"):
        assert within_noise(finished.summary[role]["accuracy"], cpu[-1].summary[role]["accuracy"], n_test), role
        assert finished.summary[role]["accuracy"] > 0.5
    assert all(next(model.parameters()).device.type == "cpu" for model in finished.models.values())
    assert next(teacher.parameters()).device.type == "cpu"  # the shared teacher was copied, never moved
    json.dumps([event_to_dict(e) for e in cuda], allow_nan=False)


def test_a_cnn_on_cuda_trains_in_bf16_and_channels_last_and_agrees_with_the_cpu(teacher):
    cuda, cpu = list(distill(CNN, teacher)), list(distill(dataclasses.replace(CNN, device="cpu"), teacher))
    assert types(cuda) == types(cpu)
    summary = cuda[-1].summary
    assert cuda[-1].status == "completed" and summary["precision"] == "bf16" and cpu[-1].summary["precision"] == "fp32"
    for role in ("hard", "kd"):  # other jitter draws (on the GPU) and bf16: the same within noise, not bit for bit
        assert within_noise(summary[role]["accuracy"], cpu[-1].summary[role]["accuracy"], summary["n_test"]), role
    for model in cuda[-1].models.values():  # handed back as CPU code expects them: NCHW, on the CPU, fp32
        assert all(p.is_contiguous() and p.dtype == torch.float32 and p.device.type == "cpu"
                   for p in model.parameters())
    fp32 = run_to_end(distill(CNN, teacher, options=DeviceOptions(precision="fp32")))
    assert fp32.summary["precision"] == "fp32" and fp32.status == "completed"


@pytest.mark.parametrize("make_run", ["distill", "teacher"])
def test_the_step_loop_does_not_wait_for_the_host_every_step(teacher, make_run):
    """Twice the steps, the same number of host syncs: the losses are read at the epoch's end (every 50 steps), not per
    step. With a read every 5 steps the count grows by the extra reads, which shows the counter sees them."""
    def run(steps: int, every: int | None = None):
        options = DeviceOptions(sync_every=every, sync_seconds=0)  # reads by count only: deterministic
        if make_run == "distill":  # 1 epoch of `steps` batches of 32
            config = dataclasses.replace(CONFIG, epochs=1, train_subset=32 * steps, augment=1)
            return lambda: run_to_end(distill(config, teacher, options=options))
        config = dataclasses.replace(TEACHER, epochs=1, batch_size=math.ceil(1151 / steps), augment=1)
        return lambda: run_to_end(train_teacher(config, "cuda", options=options))

    run(10)()  # warm-up: CUDA context, cuBLAS / cuDNN handles, the caching allocator
    few, many = count_syncs(run(10)), count_syncs(run(20))
    assert few == many and many < 20, f"{few} syncs for 10 steps, {many} for 20"
    every_5 = count_syncs(run(10, 5)), count_syncs(run(20, 5))
    assert every_5[1] - every_5[0] >= 2, f"reads every 5 steps: {every_5} syncs: the counter does not see them"


def test_a_diverged_run_on_cuda_names_the_first_bad_step(teacher):
    events = list(distill(dataclasses.replace(CONFIG, learning_rate=1e30), teacher))
    diverged = [e for e in events if isinstance(e, Diverged)]
    assert len(diverged) == 1 and events[-1].status == "diverged" and isinstance(events[-1], Finished)
    steps = [e for e in events if isinstance(e, StepLosses)]
    assert all(e.step < diverged[0].step for e in steps)
    assert all(math.isfinite(v) for e in steps for v in e.losses.values())
    json.dumps([event_to_dict(e) for e in events], allow_nan=False)  # NaN weights give None facts, not NaN


def test_a_cuda_teacher_trains_in_its_precision_and_is_handed_back_on_the_cpu():
    finished = run_to_end(train_teacher(dataclasses.replace(TEACHER, model=ModelSpec("cnn", 8, 1), epochs=1,
                                                             augment=1), "cuda"))
    assert finished.status == "completed" and finished.summary["precision"] == "bf16"
    model = finished.models["teacher"]
    assert not model.training and all(p.device.type == "cpu" and p.is_contiguous() for p in model.parameters())
    assert finished.summary["teacher"]["accuracy"] > 0.3
