"""The per-run budget: costs counted on the meta device, refusals that say what would fit (and it does), the server's
settings from the environment and server.toml, and the CLI's --budget."""
from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest

from kdviz import cli
from kdviz.core import budget as budget_module
from kdviz.core import presets
from kdviz.core.budget import (DATASET_FACTS, UNLIMITED, Budget, OverBudget, RunCost, check_budget, dataset_facts,
                               model_cost, run_cost)
from kdviz.core.data import list_datasets, load_dataset
from kdviz.core.models import ModelSpec, count_parameters, create_model
from kdviz.runs.settings import ServerSettings, server_settings
from tests.test_cli import TINY_RUN, _one_error_line

SETTING_VARIABLES = ["KDVIZ_MAX_RUN_MEMORY_MB", "KDVIZ_MAX_RUN_TFLOP", "KDVIZ_MAX_RUN_STEPS", "KDVIZ_MAX_RUN_SECONDS",
                     "KDVIZ_WORKERS", "KDVIZ_MAX_RUNS_PER_BROWSER", "KDVIZ_MAX_RUNS_PER_ADDRESS", "KDVIZ_MAX_QUEUED",
                     "KDVIZ_PAUSED_TIMEOUT_S"]


@pytest.fixture(autouse=True)
def no_server_variables(monkeypatch):
    """Whatever the machine running the tests sets, each test starts from the defaults."""
    for name in SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _default_budget() -> Budget:
    return server_settings().budget


# ---- model costs -----------------------------------------------------------------------------------------------

def test_an_mlp_costs_two_flops_per_weight_and_its_real_parameter_count():
    spec = ModelSpec("mlp", 100, 2)
    cost = model_cost(spec, (1, 28, 28), 10)
    layers = [(784, 100), (100, 100), (100, 10)]
    assert cost.flops_per_sample == 2 * sum(i * o for i, o in layers)
    assert cost.params == count_parameters(create_model(spec, (1, 28, 28), 10))
    # Flatten 784, then Linear and ReLU outputs of 100 twice, then the 10 logits; float32
    assert cost.activation_bytes_per_sample == 4 * (784 + 4 * 100 + 10)
    assert cost.largest_activation_bytes_per_sample == 4 * 784


def test_the_flop_count_is_per_image_whatever_the_batch():
    spec = ModelSpec("cnn", 8, 2)
    one, many = model_cost(spec, (1, 28, 28), 10), model_cost(spec, (1, 28, 28), 10, batch_size=5)
    assert many.flops_per_sample == one.flops_per_sample
    assert many.activation_bytes_per_sample == one.activation_bytes_per_sample


@pytest.mark.parametrize("spec, shape", [(ModelSpec("cnn", 32, 3), (1, 28, 28)),
                                         (ModelSpec("resnet", 16, 1), (3, 32, 32)),
                                         (ModelSpec("cnn", 16, 2, dropout=0.3), (1, 8, 8))])
def test_convolutional_models_have_flops_activations_and_their_real_parameter_count(spec, shape):
    cost = model_cost(spec, shape, 10)
    assert cost.flops_per_sample > 0 and cost.activation_bytes_per_sample > cost.largest_activation_bytes_per_sample > 0
    assert cost.params == count_parameters(create_model(spec, shape, 10))


def test_model_cost_is_cached_and_allocates_nothing_even_for_a_billion_parameters():
    spec = ModelSpec("mlp", 8192, 16)
    first = model_cost(spec, (1, 8, 8), 10)
    assert model_cost(spec, [1, 8, 8], 10) is first  # a list is fine: the cache sees a tuple
    assert first.params > 1_000_000_000
    assert first.flops_per_sample == pytest.approx(2 * first.params, rel=1e-3)  # (biases add no multiply)


def test_counting_installs_no_global_module_hooks(monkeypatch):
    """FlopCounterMode's module tracker would hook every module in the process, the runs other threads train too."""
    import torch.utils.module_tracker as tracker

    def refuse(hook):
        raise AssertionError("a global module hook was installed")

    monkeypatch.setattr(tracker, "register_module_forward_pre_hook", refuse)
    monkeypatch.setattr(tracker, "register_module_forward_hook", refuse)
    assert model_cost(ModelSpec("cnn", 7, 2), (1, 28, 28), 10).flops_per_sample > 0


def test_model_cost_checks_the_spec():
    with pytest.raises(ValueError, match="'vit'"):
        model_cost(ModelSpec("vit", 10, 1), (1, 8, 8), 10)


def test_every_dataset_has_facts_and_the_offline_ones_match_the_data():
    assert {info.name for info in list_datasets()} <= set(DATASET_FACTS)
    for name in ("mnist5k", "digits"):
        data = load_dataset(name)
        assert dataset_facts(name) == budget_module.DatasetFacts(data.input_shape, data.num_classes, len(data.train_y),
                                                                 len(data.val_y), len(data.test_y))
    with pytest.raises(ValueError, match="'svhn'"):
        dataset_facts("svhn")


# ---- run costs -------------------------------------------------------------------------------------------------

def test_run_cost_counts_students_teacher_and_evaluation():
    config = presets.get_preset("lecture")
    cached, uncached = run_cost(config, teacher_cached=True), run_cost(config, teacher_cached=False)
    facts = DATASET_FACTS["mnist5k"]
    student = model_cost(config.student, facts.input_shape, 10).flops_per_sample
    teacher = model_cost(config.teacher.model, facts.input_shape, 10).flops_per_sample
    training = 2 * 3 * student * config.epochs * config.train_subset
    assert cached.steps == config.epochs * math.ceil(config.train_subset / config.batch_size)
    assert training < cached.work_flops < training * 2  # evaluation and the teacher's labels on top
    teacher_training = 3 * teacher * config.teacher.epochs * facts.train
    assert uncached.work_flops - cached.work_flops == pytest.approx(
        teacher_training + teacher * config.teacher.epochs * (facts.val + facts.test))
    assert uncached.memory_bytes >= cached.memory_bytes > 2 * 16 * model_cost(config.student, (1, 28, 28), 10).params
    assert not uncached.teacher_cached and cached.teacher_cached
    assert run_cost(config).teacher_cached is False  # None asks the (empty) cache


def test_a_fixed_teacher_labels_the_training_images_once_in_the_estimate():
    """With jitter a consistent teacher labels every batch (epochs × images); a fixed one (consistent_teacher=False)
    labels the unjittered images once, like a run without jitter."""
    config = presets.get_preset("lecture")  # jitter ±2
    facts = DATASET_FACTS["mnist5k"]
    teacher = model_cost(config.teacher.model, facts.input_shape, 10).flops_per_sample
    consistent = run_cost(config, True).work_flops
    fixed = run_cost(dataclasses.replace(config, consistent_teacher=False), True).work_flops
    assert consistent - fixed == pytest.approx(teacher * config.train_subset * (config.epochs - 1))


def test_a_bigger_batch_needs_more_memory_and_fewer_steps():
    config = presets.get_preset("lecture")
    small, big = run_cost(config, True), run_cost(dataclasses.replace(config, batch_size=512), True)
    assert big.memory_bytes > small.memory_bytes and big.steps < small.steps


def test_describe_reads_as_a_sentence():
    text = RunCost(1_400_000_000, 2.1e12, 7500).describe()
    assert text == "≈1.3 GB memory, 2.1 TFLOP of training, 7,500 steps"


# ---- the default budget ----------------------------------------------------------------------------------------

CONFIGS = {name: presets.get_preset(name) for name in presets.PRESETS}  # the tuned baselines are presets too


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_preset_and_baseline_fits_the_default_budget_with_room_to_spare(name):
    budget = _default_budget()
    cost = check_budget(CONFIGS[name], budget)  # a fresh KDVIZ_HOME: the teacher must be trained too
    assert not cost.teacher_cached
    # cifar10's ResNet preset is the largest: 1.1 of the 2 GB (its estimate holds 80 MB of allocator slack, budget.py)
    assert cost.memory_bytes < budget.max_memory_bytes * 0.6
    assert cost.work_flops < budget.max_work_flops / 2
    assert cost.steps < budget.max_steps / 2


def test_ten_times_the_lecture_presets_work_fits():
    lecture = presets.get_preset("lecture")
    bigger = presets.with_overrides(lecture, epochs=10 * lecture.epochs, teacher_epochs=10 * lecture.teacher.epochs)
    cost = check_budget(bigger, _default_budget(), teacher_cached=False)
    assert cost.work_flops > 9 * run_cost(lecture, teacher_cached=False).work_flops


def test_unlimited_refuses_nothing():
    huge = dataclasses.replace(presets.get_preset("quick"), student=ModelSpec("mlp", 8192, 16), epochs=500,
                               batch_size=1)
    assert check_budget(huge, UNLIMITED).memory_bytes > 2**34


# ---- refusals say what would fit, and it does ------------------------------------------------------------------

def _number(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return int(match.group(1).replace(",", ""))


def test_a_huge_student_is_refused_by_memory_and_the_suggested_width_fits():
    config = dataclasses.replace(presets.get_preset("quick"), student=ModelSpec("mlp", 8192, 16))
    budget = _default_budget()
    with pytest.raises(OverBudget) as refused:
        check_budget(config, budget)
    error = refused.value
    assert error.limit == "memory" and isinstance(error, ValueError)
    message = str(error)
    assert "memory" in message and "2.0 GB per run" in message and "\n" not in message
    assert f"≈{budget_module.format_bytes(error.cost.memory_bytes)}" in message
    width = _number(r"width ≤ ([\d,]+) at depth 16", message)
    narrower = dataclasses.replace(config, student=ModelSpec("mlp", width, 16))
    check_budget(narrower, budget)  # what would fit does fit...
    with pytest.raises(OverBudget):  # ...and is the widest that does
        check_budget(dataclasses.replace(config, student=ModelSpec("mlp", width + 1, 16)), budget)
    depth = _number(r"depth ≤ (\d+) at width 8,192", message)
    check_budget(dataclasses.replace(config, student=ModelSpec("mlp", 8192, depth)), budget)


def test_500_epochs_at_batch_size_1_are_refused_by_steps_and_the_suggestions_fit():
    config = presets.with_overrides(presets.get_preset("lecture"), epochs=500, batch_size=1, train_subset=0)
    budget = _default_budget()
    with pytest.raises(OverBudget) as refused:
        check_budget(config, budget)
    message = str(refused.value)
    assert refused.value.limit == "steps"
    assert "1,600,000 optimizer steps (batch size 1)" in message and "100,000 per run" in message
    batch = _number(r"batch size ≥ ([\d,]+) for 500 epochs", message)
    assert check_budget(dataclasses.replace(config, batch_size=batch), budget).steps <= budget.max_steps
    with pytest.raises(OverBudget):
        check_budget(dataclasses.replace(config, batch_size=batch - 1), budget)
    epochs = _number(r"at most ([\d,]+) epochs at batch size 1", message)
    check_budget(dataclasses.replace(config, epochs=epochs), budget)
    with pytest.raises(OverBudget):
        check_budget(dataclasses.replace(config, epochs=epochs + 1), budget)


def test_a_work_refusal_suggests_epochs_that_fit():
    config = presets.get_preset("lecture")
    needed = run_cost(config, teacher_cached=True).work_flops
    budget = Budget(max_work_flops=needed / 2)
    with pytest.raises(OverBudget) as refused:
        check_budget(config, budget, teacher_cached=True)
    message = str(refused.value)
    assert refused.value.limit == "work" and "of training" in message and "FLOP" in message
    epochs = _number(r"at most ([\d,]+) epochs at this size", message)
    assert 1 <= epochs < config.epochs
    check_budget(dataclasses.replace(config, epochs=epochs), budget, teacher_cached=True)
    with pytest.raises(OverBudget):
        check_budget(dataclasses.replace(config, epochs=epochs + 1), budget, teacher_cached=True)


def test_when_the_teacher_is_the_problem_the_message_says_so():
    config = presets.get_preset("lecture")
    teacher_training = run_cost(config, False).work_flops - run_cost(config, True).work_flops
    with pytest.raises(OverBudget, match="smaller teacher, or a cached one") as refused:
        check_budget(config, Budget(max_work_flops=teacher_training * 0.9), teacher_cached=False)
    assert refused.value.limit == "work"


def test_when_another_limit_is_over_too_the_message_says_so():
    config = dataclasses.replace(presets.get_preset("quick"), student=ModelSpec("mlp", 8192, 16), epochs=5000,
                                 batch_size=1)
    with pytest.raises(OverBudget, match="over the work and steps limits too") as refused:
        check_budget(config, _default_budget())
    assert refused.value.limit == "memory"


# ---- server settings -------------------------------------------------------------------------------------------

def test_the_defaults_suit_a_small_lecture_server():
    settings = server_settings()
    assert settings == ServerSettings(Budget(2048 * 2**20, 1000e12, 100_000, 900.0), workers=1,
                                      max_live_per_browser=12, max_live_per_address=24, max_queued=64,
                                      paused_timeout_s=600.0, max_disk_bytes=20480 * 2**20,
                                      max_disk_per_browser_bytes=2048 * 2**20)


def test_server_toml_is_read_and_the_environment_wins(kdviz_home, monkeypatch):
    (kdviz_home / "server.toml").write_text(
        "[server]\nmax_run_memory_mb = 4096\nmax_run_tflop = 5.5\nmax_run_steps = 'none'\nmax_run_seconds = 0.0\n"
        "workers = 2\nmax_runs_per_browser = 3\npaused_timeout_s = 30\n[other]\nignored = true\n")
    settings = server_settings()
    assert settings.budget == Budget(4096 * 2**20, 5.5e12, None, None)
    assert (settings.workers, settings.max_live_per_browser, settings.paused_timeout_s) == (2, 3, 30.0)
    monkeypatch.setenv("KDVIZ_MAX_RUN_MEMORY_MB", "0")
    monkeypatch.setenv("KDVIZ_MAX_RUN_TFLOP", "NONE")
    monkeypatch.setenv("KDVIZ_MAX_RUN_STEPS", "2000")
    monkeypatch.setenv("KDVIZ_MAX_RUN_SECONDS", "120")
    monkeypatch.setenv("KDVIZ_WORKERS", " 4 ")
    monkeypatch.setenv("KDVIZ_MAX_QUEUED", "7")
    monkeypatch.setenv("KDVIZ_MAX_RUNS_PER_ADDRESS", "9")
    monkeypatch.setenv("KDVIZ_PAUSED_TIMEOUT_S", "")  # empty is unset: the file's value stands
    settings = server_settings()
    assert settings.budget == Budget(None, None, 2000, 120.0)
    assert (settings.workers, settings.max_queued, settings.max_live_per_address) == (4, 7, 9)
    assert (settings.max_live_per_browser, settings.paused_timeout_s) == (3, 30.0)  # from the file


@pytest.mark.parametrize("variable, value", [("KDVIZ_MAX_RUN_MEMORY_MB", "lots"), ("KDVIZ_MAX_RUN_TFLOP", "-1"),
                                             ("KDVIZ_MAX_RUN_STEPS", "2.5"), ("KDVIZ_MAX_RUN_SECONDS", "nan"),
                                             ("KDVIZ_WORKERS", "0"), ("KDVIZ_MAX_QUEUED", "none"),
                                             ("KDVIZ_PAUSED_TIMEOUT_S", "-5")])
def test_a_bad_variable_is_a_value_error_naming_it(variable, value, monkeypatch):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as error:
        server_settings()
    assert variable in str(error.value) and repr(value) in str(error.value)


@pytest.mark.parametrize("text, fragment", [("[server]\nmax_run_steps = -3\n", "max_run_steps"),
                                            ("[server]\nworkers = true\n", "workers"),
                                            ("[server]\nmax_run_memroy_mb = 1\n", "'max_run_memroy_mb'"),
                                            ("[server\n", "not valid TOML"),
                                            ("server = 3\n", "[server] must be a table")])
def test_a_bad_server_toml_is_a_value_error_naming_the_key(text, fragment, kdviz_home):
    (kdviz_home / "server.toml").write_text(text)
    with pytest.raises(ValueError) as error:
        server_settings()
    assert fragment in str(error.value) and "server.toml" in str(error.value)


# ---- the CLI ---------------------------------------------------------------------------------------------------

def test_cli_budget_refuses_a_huge_student_in_one_line(capsys):
    argv = ["distill", "--preset", "quick", "--student-width", "8192", "--student-depth", "16", "--budget"]
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    line = _one_error_line(capsys)
    assert "memory" in line and "2.0 GB per run" in line and "What would fit: student width ≤" in line


def test_cli_without_budget_is_unlimited_with_it_the_servers_limit_applies(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KDVIZ_MAX_RUN_STEPS", "1")  # the tiny run takes 2 steps
    assert cli.main([*TINY_RUN, "--budget"]) == cli.EXIT_BAD_INPUT
    line = _one_error_line(capsys)
    assert "2 optimizer steps" in line and "allows 1 per run" in line
    out_json = tmp_path / "r.json"
    assert cli.main([*TINY_RUN, "--json", str(out_json)]) == 0
    assert [run["status"] for run in json.loads(out_json.read_text())["runs"]] == ["completed"]


def test_cli_budget_stops_a_run_at_the_wall_clock_limit(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KDVIZ_MAX_RUN_SECONDS", "0.000001")
    assert cli.main([*TINY_RUN, "--budget"]) == cli.EXIT_FAILED  # the teacher cannot be trained in time
    line = _one_error_line(capsys)
    assert "teacher" in line and "wall-clock limit (1e-06 s a run)" in line
    assert cli.main(TINY_RUN) == 0  # without --budget: no limit, and now the teacher is cached
    capsys.readouterr()
    out_json = tmp_path / "w.json"
    assert cli.main([*TINY_RUN, "--budget", "--json", str(out_json)]) == 0
    err = capsys.readouterr().err
    assert "note: seed 0 reached this server's wall-clock limit" in err and "Traceback" not in err
    assert [run["status"] for run in json.loads(out_json.read_text())["runs"]] == ["cancelled"]
