"""torchrun: `torchrun --nproc-per-node 2 -m kdviz distill ...` equals the single-process run; only rank 0 speaks.

Two CPU processes (gloo) on digits, configs small enough for a busy 2-core machine, with a last batch that does not
divide evenly (and one smaller than the world: rank 1's shard is empty). Run as a script under torchrun, this file is
also the engine-level check: it writes rank 0's events, which the test compares step by step with one process's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "quick", "--dataset", "digits", "--teacher", "mlp", "--teacher-width", "32", "--teacher-depth", "1",
        "--teacher-epochs", "1", "--student", "mlp", "--student-width", "16", "--student-depth", "1", "--device", "cpu"]
# 1151 training images in batches of 100: the last batch of 51 splits 26 / 25
UNEVEN = TINY + ["--epochs", "3", "--batch-size", "100", "--augment", "0", "--train-subset", "0"]
# 97 images in batches of 32, jittered: the last batch holds 1 image, so rank 1 trains on nothing for that step
EMPTY_SHARD = TINY + ["--epochs", "2", "--batch-size", "32", "--augment", "1", "--train-subset", "97"]


def torchrun(arguments: list[str], home: Path, logs: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Two ranks on this machine, each rank's output in its own file under logs (torchrun --redirects 3)."""
    env = {**os.environ, "KDVIZ_HOME": str(home), "KDVIZ_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
               "--log-dir", str(logs), "--redirects", "3", *arguments]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stderr[-3000:]}\n{rank_output(logs)}"
    return done


def rank_output(logs: Path) -> dict[tuple[int, str], str]:
    """{(rank, "stdout" | "stderr"): text} from torchrun's per-rank log files."""
    found = {}
    for path in logs.glob("*/attempt_*/*/std*.log"):
        found[(int(path.parent.name), path.stem)] = path.read_text()
    return found


def single_process(arguments: list[str], monkeypatch, capsys) -> str:
    from kdviz.cli import main

    monkeypatch.setenv("KDVIZ_THREADS", "1")  # as the ranks: thread count changes float sums and the teacher's key
    assert main(arguments) == 0
    return capsys.readouterr().out


def assert_same_result(ddp: dict, single: dict) -> None:
    """Same teacher, same accuracies (within one image), fidelity to the teacher equal up to float rounding."""
    assert ddp["teacher"] == single["teacher"]
    (a,), (b,) = ddp["runs"], single["runs"]
    assert a["world_size"] == 2 and "world_size" not in b
    for role in ("hard", "kd"):
        n_test, n_val = ddp["summary"]["n_test"], ddp["summary"]["n_val"]
        assert abs(a[role]["accuracy"] - b[role]["accuracy"]) * n_test <= 1.01, role
        assert abs(a[role]["val_accuracy"] - b[role]["val_accuracy"]) * n_val <= 1.01, role
        assert a[role]["agreement"] == pytest.approx(b[role]["agreement"], abs=1.01 / n_test)
        assert a[role]["kl_to_teacher"] == pytest.approx(b[role]["kl_to_teacher"], rel=1e-4)
        assert a[role]["params"] == b[role]["params"]


def assert_only_rank_0_spoke(logs: Path) -> str:
    output = rank_output(logs)
    assert {(0, "stdout"), (1, "stdout"), (1, "stderr")} <= set(output), f"torchrun's log layout changed: {output}"
    assert output[(1, "stdout")] == "" and output[(1, "stderr")] == ""  # rank 1 printed nothing
    stdout = output[(0, "stdout")]
    lines = stdout.splitlines()
    assert sum(line.startswith("hard-label student") for line in lines) == 1  # one table
    assert sum(line.startswith("wrote ") for line in lines) == 1
    return stdout


@pytest.mark.ddp
@pytest.mark.timeout(180)
def test_torchrun_equals_one_process_with_an_uneven_last_batch(tmp_path, kdviz_home, monkeypatch, capsys):
    """Rank 0 trains and caches the teacher (the only file written), the ranks share it; same numbers as one process."""
    torchrun(["-m", "kdviz", "distill", *UNEVEN, "--json", str(tmp_path / "ddp.json")], kdviz_home, tmp_path / "logs")
    assert_only_rank_0_spoke(tmp_path / "logs")
    teachers = list((kdviz_home / "teachers").glob("*.pt"))
    assert len(teachers) == 1  # one cache file, written once, by rank 0
    out = single_process(["distill", *UNEVEN, "--json", str(tmp_path / "one.json")], monkeypatch, capsys)
    assert "cached" not in out  # (the progress line says so on stderr; stdout is the table)
    assert list((kdviz_home / "teachers").glob("*.pt")) == teachers  # the single run found rank 0's teacher
    assert_same_result(json.loads((tmp_path / "ddp.json").read_text()), json.loads((tmp_path / "one.json").read_text()))


@pytest.mark.ddp
@pytest.mark.timeout(180)
def test_torchrun_equals_one_process_with_jitter_and_an_empty_shard(tmp_path, kdviz_home, monkeypatch, capsys):
    """Every rank draws the jitter of the whole global batch and keeps its slice; a rank whose slice is empty joins
    the all-reduce with a zero gradient."""
    single_process(["distill", *EMPTY_SHARD, "--json", str(tmp_path / "one.json")], monkeypatch, capsys)
    torchrun(["-m", "kdviz", "distill", *EMPTY_SHARD, "--json", str(tmp_path / "ddp.json")], kdviz_home,
             tmp_path / "logs")
    assert_only_rank_0_spoke(tmp_path / "logs")
    assert_same_result(json.loads((tmp_path / "ddp.json").read_text()), json.loads((tmp_path / "one.json").read_text()))


# ---- the engine under torchrun, step by step ----------------------------------------------------------------------

def engine_config():
    from kdviz.core.engine import DistillConfig, TeacherConfig
    from kdviz.core.models import ModelSpec

    teacher = TeacherConfig("digits", ModelSpec("mlp", 32, 1), epochs=1, batch_size=64, augment=0)
    return DistillConfig(teacher, ModelSpec("mlp", 16, 1), temperature=4.0, alpha=0.7, epochs=2, batch_size=48,
                         learning_rate=1e-2, augment=1, train_subset=201, device="cpu",
                         probe_size=4)  # 201 images = 4 batches of 48 + one of 9, split 5 / 4


def engine_events(shard=None) -> list[dict]:
    from kdviz.core.distributed import SINGLE
    from kdviz.core.engine import distill, event_to_dict, run_to_end, train_teacher

    config = engine_config()
    teacher = run_to_end(train_teacher(config.teacher, "cpu")).models["teacher"]
    return [event_to_dict(event) for event in distill(config, teacher, shard=shard or SINGLE)]


@pytest.mark.ddp
@pytest.mark.timeout(180)
def test_the_engine_under_torchrun_reports_the_global_batch_losses_of_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("KDVIZ_THREADS", "1")
    torchrun([__file__, str(tmp_path / "events.json")], tmp_path, tmp_path / "logs")
    ddp = json.loads((tmp_path / "events.json").read_text())
    one = engine_events()
    assert [e["event"] for e in ddp] == [e["event"] for e in one]
    steps = [(a, b) for a, b in zip(ddp, one) if a["event"] == "StepLosses"]
    assert len(steps) == 2 * 5
    for a, b in steps:
        assert (a["step"], a["epoch"]) == (b["step"], b["epoch"])
        for key, value in b["losses"].items():  # the mean over the global batch, not over rank 0's shard
            assert a["losses"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (a["step"], key)
    for a, b in zip(ddp, one):
        if a["event"] == "EpochEnd":
            assert a["accuracy"] == b["accuracy"] and a["val_accuracy"] == b["val_accuracy"]
        if a["event"] == "Snapshot":
            for role in b["logits"]:
                flat = [value for row in b["logits"][role] for value in row]
                assert [value for row in a["logits"][role] for value in row] == pytest.approx(flat, rel=1e-4, abs=1e-5)
    assert ddp[-1]["summary"]["world_size"] == 2 and ddp[-1]["status"] == "completed"


def test_shards_cover_each_global_batch_and_weigh_it_exactly():
    from kdviz.core.distributed import Shard

    for world in (1, 2, 3, 8):
        for batch in (1, 2, 7, 8, 33):
            ranks = [Shard(rank, world) for rank in range(world)]
            bounds = [rank.bounds(batch) for rank in ranks]
            assert bounds[0][0] == 0 and bounds[-1][1] == batch
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # contiguous, in rank order
            sizes = [end - start for start, end in bounds]
            assert max(sizes) - min(sizes) <= 1 and sizes[0] >= 1  # balanced; rank 0 never empty
            # DDP averages over ranks: the weights make the average the global batch's mean
            assert sum(rank.weight(size, batch) for rank, size in zip(ranks, sizes)) / world == pytest.approx(1.0)


def test_torchrun_is_detected_from_its_environment():
    from kdviz.core.distributed import Shard, from_environment

    assert from_environment({}) is None
    assert from_environment({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) is None  # one process: no DDP
    assert from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Shard(3, 4, 1)
    with pytest.raises(ValueError, match="RANK must be in"):
        from_environment({"RANK": "4", "WORLD_SIZE": "4"})


def _main(path: str) -> None:
    """Under torchrun: the engine on this rank's shard; rank 0 writes its events to path."""
    import torch

    from kdviz.core import distributed

    shard = distributed.from_environment()
    with distributed.process_group(shard, torch.device("cpu")):
        events = engine_events(shard)
    if shard.is_main:
        Path(path).write_text(json.dumps(events))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _main(sys.argv[1])
