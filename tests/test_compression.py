"""The compression experiment (kdviz.experiments.compression): FLOP counts, the case study, a tiny run, a finished
run's students, the report, the CLI and the refusals."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from conftest import experiment_config, wait_for_run
from kdviz.core.budget import forward_flops
from kdviz.core.engine import DistillConfig, Finished, TeacherConfig, run_to_end, train_teacher
from kdviz.core.models import ModelSpec
from kdviz.experiments import compression
from kdviz.experiments.events import Measured

TINY = DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0),
                     ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.5, epochs=1, batch_size=64, train_subset=200,
                     device="cpu")
CONFIG = compression.CompressionConfig(TINY, power_watts=10.0, min_run_time=0.02, batch_sizes=(1, 64))
NUMBERS = ("params", "size_bytes", "disk_bytes", "flops_per_image", "latency_ms_batch1", "latency_ms_batch256",
           "throughput_per_s", "energy_j_per_prediction", "energy_j_per_million", "power_watts")
TINY_FLAGS = ["--dataset", "digits", "--teacher-width", "16", "--teacher-depth", "1", "--teacher-epochs", "1",
              "--student-width", "8", "--student-depth", "1", "--epochs", "1", "--train-subset", "100",
              "--device", "cpu", "--min-run-time", "0.02"]


@pytest.fixture(scope="module")
def teacher():
    finished = run_to_end(train_teacher(TINY.teacher, "cpu"))
    assert finished.status == "completed"
    return finished.models["teacher"]


def events_of(config, teacher, should_stop=None):
    events = list(compression.run(config, teacher, should_stop))
    assert isinstance(events[-1], Finished) and not any(isinstance(e, Finished) for e in events[:-1])
    return events


# ---- counting: parameters and FLOPs ----------------------------------------------------------------------------

def test_torchvision_resnets_have_their_published_parameter_counts():
    rows = {row["arch"]: row for row in compression.case_study()}
    assert rows["resnet50"]["params"] == 25_557_032
    assert rows["resnet152"]["params"] == 60_192_808
    assert compression.size_ratio() == pytest.approx(60_192_808 / 25_557_032) and compression.size_ratio() > 2


def test_forward_flops_of_an_mlp_is_two_flops_per_multiply_add():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10))
    assert forward_flops(model, torch.zeros((3, 1, 28, 28))) == 2 * 3 * (784 * 100 + 100 * 10)


def test_the_case_study_counts_flops_live_and_quotes_the_metadata():
    from torchvision.models import ResNet50_Weights, ResNet152_Weights

    rows = {row["arch"]: row for row in compression.case_study()}
    resnet50, resnet152 = rows["resnet50"], rows["resnet152"]
    assert resnet50["torchvision_gmacs"] == ResNet50_Weights.IMAGENET1K_V1.meta["_ops"] == pytest.approx(4.089)
    assert resnet50["gflops_224"] == pytest.approx(2 * resnet50["torchvision_gmacs"], rel=0.01)  # ≈ 8.18
    assert resnet152["gflops_224"] == pytest.approx(2 * resnet152["torchvision_gmacs"], rel=0.01)
    assert resnet50["imagenet_top1"] == 76.13 and resnet152["imagenet_top1"] == 78.312
    assert resnet152["imagenet_top1"] == ResNet152_Weights.IMAGENET1K_V1.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert {row["weights"] for row in rows.values()} == {"IMAGENET1K_V1"}
    assert (resnet152["role"], resnet50["role"]) == ("teacher", "student")
    rows["resnet50"]["params"] = 0  # callers get copies: the cache cannot be changed through them
    assert {row["arch"]: row for row in compression.case_study()}["resnet50"]["params"] == 25_557_032
    assert compression.lecture_numbers() == {"teacher_top1": "≈78", "student_hard_top1": 76.32,
                                             "student_kd_top1": 77.75, "source": "quoted from the lecture"}


# ---- a tiny run ------------------------------------------------------------------------------------------------

def test_tiny_run_measures_teacher_students_and_int8(teacher):
    events = events_of(CONFIG, teacher)
    measured = [e for e in events if isinstance(e, Measured)]
    finished = events[-1]
    assert finished.status == "completed"
    assert [m.done for m in measured] == [1, 2, 3, 4] and {m.total for m in measured} == {4}
    rows = finished.summary["models"]
    assert rows == [m.point for m in measured]
    assert [row["role"] for row in rows] == ["teacher", "hard", "kd", "kd_int8"]
    for row in rows:
        assert list(row) == list(compression.ROW_KEYS)
        for key in NUMBERS:
            assert isinstance(row[key], (int, float)) and math.isfinite(row[key]) and row[key] > 0, (row, key)
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["val_accuracy"] <= 1
        assert row["energy_measured"] is False and "10 W" in row["power_source"]
        assert row["power_watts"] == pytest.approx(10.0)
        assert row["energy_j_per_million"] == pytest.approx(1e6 * row["energy_j_per_prediction"])
    by_role = {row["role"]: row for row in rows}
    assert by_role["teacher"]["params"] == 64 * 16 + 16 + 16 * 10 + 10
    assert by_role["kd"]["params"] == by_role["hard"]["params"] == 64 * 8 + 8 + 8 * 10 + 10
    assert by_role["kd"]["params"] < by_role["teacher"]["params"]
    assert by_role["kd"]["flops_per_image"] == 2 * (64 * 8 + 8 * 10) < by_role["teacher"]["flops_per_image"]
    assert by_role["kd"]["size_bytes"] == 4 * by_role["kd"]["params"]
    int8 = by_role["kd_int8"]
    assert int8["flops_per_image"] == by_role["kd"]["flops_per_image"], "counted on the float model"
    assert int8["disk_bytes"] < by_role["kd"]["disk_bytes"] and int8["size_bytes"] < by_role["kd"]["size_bytes"]
    summary = finished.summary
    assert {"models", "case_study", "lecture", "size_ratio", "device", "threads", "source_run", "seconds"} <= \
        set(summary)
    assert summary["device"] == "cpu" and summary["source_run"] == "" and summary["batch_sizes"] == [1, 64]
    assert len(summary["case_study"]) == 2 and summary["size_ratio"] > 2
    json.dumps(summary)  # plain JSON


def test_without_quantize_there_is_no_int8_row(teacher):
    rows = events_of(dataclasses.replace(CONFIG, quantize=False), teacher)[-1].summary["models"]
    assert [row["role"] for row in rows] == ["teacher", "hard", "kd"]


def test_a_student_without_linear_layers_gets_a_notice_not_an_int8_model():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    model, why = compression._int8_plan(CONFIG, conv)
    assert model is None and "no Linear layers" in why


def test_a_stop_after_the_first_model_keeps_its_row(teacher):
    seen = []
    events = []
    for event in compression.run(CONFIG, teacher, lambda: len(seen) >= 1):
        events.append(event)
        if isinstance(event, Measured):
            seen.append(event)
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.status == "cancelled"
    assert len(seen) == 1 and finished.summary["models"] == [seen[0].point]
    assert seen[0].point["role"] == "teacher"


def test_a_stop_during_training_ends_with_no_rows(teacher):
    finished = events_of(CONFIG, teacher, lambda: True)[-1]
    assert finished.status == "cancelled" and finished.summary["models"] == []


# ---- a finished run's students ---------------------------------------------------------------------------------

def test_a_finished_runs_students_are_measured(make_manager):
    from kdviz.core.teachers import get_teacher

    manager = make_manager(workers=1)
    run_id = manager.submit(TINY, "alice")
    run = wait_for_run(manager, run_id, timeout=120)
    assert run.state == "completed"
    config = compression.config_for_run(run_id)
    assert config.distill == TINY and config.source_run == run_id
    assert compression.budget_configs(config) == [], "nothing is trained"
    config = dataclasses.replace(config, power_watts=10.0, min_run_time=0.02, quantize=False)
    teacher, _ = get_teacher(config.distill.teacher, "cpu")
    finished = events_of(config, teacher)[-1]
    assert finished.status == "completed" and finished.summary["source_run"] == run_id
    rows = {row["role"]: row for row in finished.summary["models"]}
    for role in ("teacher", "hard", "kd"):
        assert rows[role]["params"] == run.summary[role]["params"]
        assert rows[role]["accuracy"] == pytest.approx(run.summary[role]["accuracy"], abs=1e-6)
        assert rows[role]["val_accuracy"] == pytest.approx(run.summary[role]["val_accuracy"], abs=1e-6)
    # the same through the run manager (the app's path): it prepares the teacher, then runs the experiment
    measured = wait_for_run(manager, manager.submit(config, "alice"), timeout=120)
    assert measured.state == "completed" and measured.experiment == "compression"
    assert [row["params"] for row in measured.summary["models"]] == [row["params"] for row in rows.values()]
    from kdviz import experiments

    assert experiments.from_record(measured.config) == config
    other = dataclasses.replace(config, distill=dataclasses.replace(TINY, student=ModelSpec("mlp", 4, 1)))
    with pytest.raises(ValueError, match=f"run {run_id} distilled another teacher or student than this config's"):
        next(compression.run(other, teacher))


def test_an_unknown_run_is_a_one_line_value_error(teacher):
    for run_id in ("20250101-120000-abcdef", "abc", ""):
        with pytest.raises(ValueError) as error:
            compression.config_for_run(run_id)
        assert str(error.value) == f"there is no finished run {run_id!r} with trained students on this server"
    missing = dataclasses.replace(CONFIG, source_run="20250101-120000-abcdef")
    with pytest.raises(ValueError, match="there is no finished run '20250101-120000-abcdef'"):
        next(compression.run(missing, teacher))


# ---- bad input -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"power_watts": -5}, r"^power must be a finite number of watts > 0, got -5$"),
    ({"power_watts": float("nan")}, r"got nan"),
    ({"power_watts": "abc"}, r"got 'abc'"),
    ({"batch_sizes": (0, 256)}, r"^batch sizes must be integers in \[1, 4096\], got 0$"),
    ({"batch_sizes": (1, 5000)}, r"got 5000"),
    ({"batch_sizes": (1,)}, r"batch sizes must be a pair"),
    ({"batch_sizes": [1, 256]}, r"batch sizes must be a pair"),
    ({"min_run_time": 0}, r"min run time must be a number of seconds in \(0, 10\], got 0"),
    ({"min_run_time": 11}, r"got 11"),
    ({"source_run": "abc"}, r"not a run id: 'abc'"),
    ({"quantize": "yes"}, r"quantize must be True or False"),
    ({"distill": dataclasses.replace(TINY, epochs=0)}, r"epochs must be an integer >= 1, got 0"),
])
def test_bad_input_is_a_one_line_value_error(changes, message):
    with pytest.raises(ValueError, match=message) as error:
        compression.check(dataclasses.replace(CONFIG, **changes))
    assert "\n" not in str(error.value)


def test_run_checks_before_training(teacher):
    with pytest.raises(ValueError, match="got -5"):
        next(compression.run(dataclasses.replace(CONFIG, power_watts=-5), teacher))


# ---- the report, the CLI and the record -------------------------------------------------------------------------

def fake_row(role, params, flops, latency, joules, accuracy):
    return {"name": role, "role": role, "params": params, "size_bytes": 4 * params, "disk_bytes": 4 * params + 900,
            "flops_per_image": flops, "latency_ms_batch1": latency, "latency_ms_batch256": 10 * latency,
            "throughput_per_s": 256 / (10 * latency) * 1000, "accuracy": accuracy, "val_accuracy": accuracy,
            "energy_j_per_prediction": joules, "energy_j_per_million": joules * 1e6, "energy_measured": False,
            "power_watts": 4.0, "power_source": "estimated by a test"}


def fake_run(seed, kd_accuracy):
    return {"seed": seed, "status": "completed", "models": [
        fake_row("teacher", 2000, 4000.0, 0.4, 8e-6, 0.97), fake_row("hard", 500, 1000.0, 0.1, 2e-6, 0.90),
        fake_row("kd", 500, 1000.0, 0.1, 2e-6, kd_accuracy)], "case_study": compression.case_study(),
        "batch_sizes": [1, 256]}


def test_report_has_the_keys_and_the_savings():
    runs = [fake_run(0, 0.92), fake_run(1, 0.94)]
    result = compression.report(CONFIG, runs)
    json.dumps(result)
    assert set(result) == {"experiment", "models", "case_study", "lecture", "size_ratio", "savings", "runs"}
    assert result["experiment"] == "compression" and result["runs"] == runs
    assert set(result["savings"]) == {"params", "flops", "latency", "energy"}
    assert result["savings"] == {"params": 4.0, "flops": 4.0, "latency": pytest.approx(4.0),
                                 "energy": pytest.approx(4.0)}
    kd = {row["role"]: row for row in result["models"]}["kd"]
    assert set(compression.ROW_KEYS) <= set(kd) and kd["n_seeds"] == 2
    assert kd["accuracy"] == pytest.approx(0.93), "means over the seeds"
    assert {"name", "params", "gflops_224"} <= set(result["case_study"][0])
    assert result["lecture"]["source"] == "quoted from the lecture"
    assert result["size_ratio"] == pytest.approx(2.355, abs=0.001)
    text = compression.format_text(result)
    assert "The KD student has 4.0× fewer parameters and 4.0× fewer FLOPs per image than the teacher, answers " \
        "4.0× faster at batch 1" in text
    assert "uses ≈4.0× less energy per prediction" in text and "estimated by a test" in text
    assert "its test accuracy is 93.00 % vs the teacher's 97.00 %" in text
    assert "quoted from the lecture" in text and "ResNet-152" in text and "more than a factor of two" in text
    assert "(means over 2 seeds)" in text


def test_report_of_a_cancelled_run_has_no_savings():
    run = {"seed": 0, "status": "cancelled", "models": [fake_row("teacher", 2000, 4000.0, 0.4, 8e-6, 0.97)]}
    result = compression.report(CONFIG, [run])
    assert result["savings"] == {"params": None, "flops": None, "latency": None, "energy": None}
    assert "Too little was measured" in compression.format_text(result)


def test_arguments_build_the_config():
    config = experiment_config(compression, ["--power", "12.5", "--no-quantize", "--min-run-time", "0.05"], TINY)
    assert config == compression.CompressionConfig(TINY, power_watts=12.5, quantize=False, min_run_time=0.05)
    assert experiment_config(compression, []) == compression.default_config()
    with pytest.raises(ValueError, match="got -5"):
        experiment_config(compression, ["--power", "-5"], TINY)
    with pytest.raises(ValueError, match="there is no finished run"):
        experiment_config(compression, ["--run", "20250101-120000-abcdef"], TINY)


def test_the_default_is_the_lecture_preset_trained_here_with_codecarbon():
    from kdviz.core.presets import DEFAULT_TEACHER, get_preset

    config = compression.check(compression.default_config())
    assert config.distill == get_preset("lecture") and config.distill.teacher == DEFAULT_TEACHER
    assert config.source_run == "" and config.power_watts is None and config.quantize
    assert config.batch_sizes == (1, 256) and compression.budget_configs(config) == [config.distill]
    assert compression.energy_seconds(config) == pytest.approx(1.0)
    assert compression.energy_seconds(dataclasses.replace(config, min_run_time=10)) == 10, "at most 10 s"


def test_the_record_round_trips():
    from kdviz import experiments

    config = dataclasses.replace(CONFIG, source_run="20250101-120000-abcdef")
    record = json.loads(json.dumps(experiments.to_record(config)))
    assert record["experiment"] == "compression"
    assert experiments.from_record(record) == config


def test_cli_writes_the_report(tmp_path, capsys):
    from kdviz.cli import main

    out = tmp_path / "compression.json"
    assert main(["experiment", "compression", *TINY_FLAGS, "--power", "10", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "The KD student has" in text and "quoted from the lecture" in text
    result = json.loads(out.read_text())
    assert {"experiment", "models", "case_study", "lecture", "size_ratio", "savings", "runs", "config"} == \
        set(result)
    assert [row["role"] for row in result["models"]] == ["teacher", "hard", "kd", "kd_int8"]
    assert result["config"]["power_watts"] == 10.0 and result["config"]["experiment"] == "compression"


def test_cli_refuses_a_negative_power_in_one_line(capsys):
    from kdviz.cli import EXIT_BAD_INPUT, main

    assert main(["experiment", "compression", *TINY_FLAGS, "--power", "-5"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.splitlines() == ["kdviz: error: power must be a finite number of watts > 0, got -5"]
