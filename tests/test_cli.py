"""`python -m kdviz`: the case-study table and JSON, one-line errors, prepare's cache, and list."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdviz import cli

from kdviz.core import presets
from kdviz.core.data import list_datasets
from kdviz.core.engine import TeacherConfig
from kdviz.core.models import ModelSpec, list_models

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = ["distill", "--preset", "quick", "--epochs", "1", "--teacher-epochs", "1", "--train-subset", "100"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("kdviz: error:")]
    assert len(errors) == 1, err
    assert err.rstrip("\n").splitlines()[-1] == errors[0]  # the error is the last thing said
    return errors[0]


def _check_result(result: dict, seeds: list[int]) -> None:
    assert set(result) >= {"config", "teacher", "runs", "summary"}
    config = result["config"]
    assert config["seeds"] == seeds and config["epochs"] == 1 and config["teacher"]["epochs"] == 1
    assert config["teacher"]["dataset"] == "digits"
    assert {"accuracy", "params", "size_bytes"} <= set(result["teacher"])
    assert [run["seed"] for run in result["runs"]] == seeds
    for run in result["runs"]:
        assert 0 <= run["hard"]["accuracy"] <= 1 and 0 <= run["kd"]["accuracy"] <= 1
    summary = result["summary"]
    assert {"hard_mean", "kd_mean", "kd_wins"} <= set(summary)
    hard = [run["hard"]["accuracy"] for run in result["runs"]]
    kd = [run["kd"]["accuracy"] for run in result["runs"]]
    assert summary["hard_mean"] == pytest.approx(sum(hard) / len(hard))
    assert summary["kd_mean"] == pytest.approx(sum(kd) / len(kd))
    assert summary["kd_wins"] == sum(k > h for h, k in zip(hard, kd))


def _check_table(out: str) -> None:
    rows = {line.split("  ")[0].strip(): line for line in out.splitlines()}
    assert {"teacher", "hard-label student", "KD student"} <= set(rows), out
    assert "test accuracy" in out and "parameters" in out


# ---- the real command, once, in its own process ----------------------------------------------------------------

def test_python_m_kdviz_distill_writes_the_table_and_json(tmp_path, kdviz_home):
    out_json = tmp_path / "result.json"
    env = {**os.environ, "KDVIZ_HOME": str(kdviz_home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "kdviz", *TINY_RUN, "--seeds", "0", "1", "--json", str(out_json)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    _check_table(done.stdout)
    assert f"wrote {out_json}" in done.stdout
    _check_result(json.loads(out_json.read_text()), [0, 1])
    assert list((kdviz_home / "teachers").glob("digits-*.pt"))  # the teacher is now cached


def test_distill_in_process_reuses_the_cached_teacher(capsys, tmp_path):
    out_json = tmp_path / "a.json"
    assert cli.main([*TINY_RUN, "--seeds", "3", "--json", str(out_json)]) == 0
    first = capsys.readouterr()
    _check_table(first.out)
    assert "cached" not in first.err
    assert cli.main([*TINY_RUN, "--seeds", "3", "--json", str(tmp_path / "b.json")]) == 0
    second = capsys.readouterr()
    assert "cached" in second.err and "Traceback" not in second.err
    a, b = json.loads(out_json.read_text()), json.loads((tmp_path / "b.json").read_text())
    _check_result(a, [3])
    assert [r["kd"] for r in a["runs"]] == [r["kd"] for r in b["runs"]]  # every number reproduces


def test_flags_override_the_preset(capsys, tmp_path):
    out_json = tmp_path / "o.json"
    code = cli.main([*TINY_RUN, "--temperature", "7", "--alpha", "0.25", "--student-width", "12", "--batch-size",
                     "50", "--device", "cpu", "--json", str(out_json)])
    assert code == 0
    config = json.loads(out_json.read_text())["config"]
    assert (config["temperature"], config["alpha"], config["batch_size"]) == (7.0, 0.25, 50)
    quick_student = dataclasses.asdict(presets.get_preset("quick").student)
    assert config["student"] == {**quick_student, "width": 12}  # only the width flag changed the preset's student
    assert config["train_subset"] == 100 and config["device"] == "cpu" and config["seeds"] == [0]


def test_a_tuned_baseline_reruns_with_one_flag(capsys, tmp_path):
    """`--preset quick-baseline`: the hard-label student tuned alone, the settings the sweep's write-up reports."""
    out_json = tmp_path / "b.json"
    assert cli.main(["distill", "--preset", "quick-baseline", "--epochs", "1", "--teacher-epochs", "1",
                     "--json", str(out_json)]) == 0
    config = json.loads(out_json.read_text())["config"]
    baseline = presets.get_preset("quick-baseline")
    assert (config["learning_rate"], config["weight_decay"], config["augment"], config["student"]) == \
        (baseline.learning_rate, baseline.weight_decay, baseline.augment, dataclasses.asdict(baseline.student))


def test_json_has_validation_beside_test_per_model_and_records_the_split(capsys, tmp_path):
    out_json = tmp_path / "v.json"
    assert cli.main([*TINY_RUN, "--seeds", "0", "1", "--weight-decay", "0.1", "--student-dropout", "0.2",
                     "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    result = json.loads(out_json.read_text())
    config = result["config"]
    assert config["weight_decay"] == 0.1 and config["student"]["dropout"] == 0.2
    assert config["split"] == {"train": 1151, "validation": 287, "test": 359, "validation_fraction": 0.2, "seed": 0,
                               "version": config["split"]["version"]}
    for run in result["runs"]:
        for role in ("hard", "kd"):
            assert 0 <= run[role]["val_accuracy"] <= 1 and 0 <= run[role]["accuracy"] <= 1
    summary = result["summary"]
    for role in ("hard", "kd"):
        values = [run[role]["val_accuracy"] for run in result["runs"]]
        assert summary[f"{role}_val_mean"] == pytest.approx(sum(values) / 2)
    assert "val_accuracy" in result["teacher"]
    header = next(line for line in out.splitlines() if line.startswith("model"))
    assert "val accuracy (287)" in header and "test accuracy (359)" in header
    kd_row = next(line for line in out.splitlines() if line.startswith("KD student"))
    assert f"{100 * summary['kd_val_mean']:.2f}%" in kd_row and f"{100 * summary['kd_mean']:.2f}%" in kd_row


# ---- bad input: one line, no traceback, non-zero -----------------------------------------------------------------

BAD_ARGUMENTS = [
    (["distill", "--preset", "imagenet"], "'imagenet'"),
    (["distill", "--preset", "quick", "--dataset", "svhn"], "'svhn'"),
    (["distill", "--preset", "quick", "--student", "vit"], "'vit'"),
    (["distill", "--preset", "quick", "--teacher", "gpt"], "'gpt'"),
    (["distill", "--preset", "quick", "--temperature", "0"], "temperature"),
    (["distill", "--preset", "quick", "--temperature", "-3"], "-3"),
    (["distill", "--preset", "quick", "--alpha", "1.5"], "1.5"),
    (["distill", "--preset", "quick", "--epochs", "0"], "epochs"),
    (["distill", "--preset", "quick", "--epochs", "two"], "'two'"),
    (["distill", "--preset", "quick", "--device", "tpu"], "'tpu'"),
    (["distill", "--preset", "quick", "--bogus"], "--bogus"),
    (["distill", "--preset", "quick", "--student-width", "0"], "got 0"),
    (["distill", "--preset", "quick", "--weight-decay", "-1"], "weight decay must be a number >= 0, got -1.0"),
    (["distill", "--preset", "quick", "--lr", "0.01", "--weight-decay", "100"],
     "learning rate × weight decay must be < 1"),
    (["distill", "--preset", "quick", "--student-dropout", "1"], "dropout must be in [0, 1), got 1.0"),
    (["train"], "'train'"),
    ([], "command"),
]


@pytest.mark.parametrize("argv, fragment", BAD_ARGUMENTS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_arguments_exit_non_zero_with_one_line(argv, fragment, capsys):
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("kdviz: error:") and fragment in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line(capsys):
    assert cli.main(["distill", "--preset", "quick", "--device", "cuda"]) == cli.EXIT_BAD_INPUT
    line = _one_error_line(capsys)
    assert "'cuda' is not available" in line and "cpu" in line


def test_a_download_dataset_offline_is_one_line_naming_the_offline_sets(capsys, offline):
    assert cli.main(["distill", "--preset", "quick", "--dataset", "cifar10", "--teacher-epochs", "1"]) != 0
    line = _one_error_line(capsys)
    assert "cifar10" in line and "mnist5k" in line and "digits" in line


def test_a_diverging_run_exits_1_with_the_step(capsys):
    assert cli.main([*TINY_RUN, "--lr", "1e30"]) == cli.EXIT_FAILED
    line = _one_error_line(capsys)
    assert "diverged at step" in line and "learning rate" in line


def test_an_unexpected_error_is_one_line_too(capsys, monkeypatch):
    def boom(args):
        raise RuntimeError("something broke")

    monkeypatch.setattr(cli, "cmd_list", boom)
    assert cli.main(["list"]) == cli.EXIT_FAILED
    assert _one_error_line(capsys) == "kdviz: error: RuntimeError: something broke"


def test_bad_argument_in_a_real_process_is_one_line(kdviz_home):
    env = {**os.environ, "KDVIZ_HOME": str(kdviz_home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "kdviz", "distill", "--alpha", "1.5"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith("kdviz: error:")
    assert "1.5" in done.stderr


# ---- prepare and list --------------------------------------------------------------------------------------------

def test_prepare_trains_then_says_cached(capsys, monkeypatch, kdviz_home):
    tiny = TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0)
    monkeypatch.setattr(presets, "teachers_to_prepare", lambda names=None: [tiny])
    assert cli.main(["prepare", "--device", "cpu"]) == 0
    first = capsys.readouterr()
    assert "digits: MLP 64-16-10" in first.out and "test accuracy" in first.out
    assert str(kdviz_home / "teachers") in first.out and "cached" not in first.err
    assert cli.main(["prepare"]) == 0
    second = capsys.readouterr()
    assert "cached" in second.err and "digits: MLP 64-16-10" in second.out


def test_prepare_takes_presets_by_name(capsys, monkeypatch):
    asked, real = [], presets.teachers_to_prepare
    monkeypatch.setattr(presets, "teachers_to_prepare", lambda names=None: asked.append(names) or [])
    assert cli.main(["prepare", "--preset", "fashion", "quick"]) == 0
    assert asked == [["fashion", "quick"]]
    assert real(["fashion"]) == [presets.get_preset("fashion").teacher]
    with pytest.raises(ValueError, match="unknown preset"):
        real(["nope"])


def test_prepare_covers_the_offline_presets_teachers():
    configs = presets.teachers_to_prepare()
    assert presets.DEFAULT_TEACHER in configs
    assert {c.dataset for c in configs} == {"mnist5k", "digits"} and len(configs) == len(set(configs))


def test_list_names_every_dataset_model_and_preset(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    from kdviz.experiments import EXPERIMENTS

    expected = [i.name for i in list_datasets()] + [i.name for i in list_models()] + list(presets.PRESETS) \
        + list(EXPERIMENTS)
    assert names == expected
    assert "datasets:" in out and "models:" in out and "presets:" in out


def test_settings_prints_each_value_its_source_and_the_worst_cases(capsys, kdviz_home, monkeypatch):
    (kdviz_home / "server.toml").write_text("[server]\nmax_paused = 2\nmax_run_memory_mb = 1024\n")
    monkeypatch.setenv("KDVIZ_WORKERS", "3")
    monkeypatch.setenv("KDVIZ_SERVER_MEMORY_MB", "4096")
    assert cli.main(["settings"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  ") and len(line.split()) >= 3}
    assert row["workers"] == ["3", "KDVIZ_WORKERS"] and row["max_paused"] == ["2", "server.toml"]
    assert row["max_queued"] == ["64", "default"]
    memory = next(line for line in lines if "runs in memory" in line)
    assert "(workers 3 + paused 2)" in memory and "5.0 GB" in memory and "4.0 GB are refused" in memory
    monkeypatch.setenv("KDVIZ_MAX_PAUSED", "many")
    assert cli.main(["settings"]) == cli.EXIT_BAD_INPUT
    assert "KDVIZ_MAX_PAUSED" in _one_error_line(capsys)
