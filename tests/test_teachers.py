"""kdviz.core.teachers: train once then load from the cache; corrupt or foreign files are reported and rebuilt."""
from __future__ import annotations

import dataclasses
import os
import threading

import pytest
import torch

from kdviz.core import paths, teachers
from kdviz.core.engine import Finished, Notice, Started, StepLosses, TeacherConfig
from kdviz.core.models import ModelSpec
from kdviz.core.teachers import get_teacher, is_cached, load_cached, prepare_teacher, teacher_key, teacher_path

TINY = TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0)
OTHER = dataclasses.replace(TINY, seed=1)


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _trained(config=TINY) -> list:
    events = list(prepare_teacher(config, "cpu"))
    assert events[-1].status == "completed"
    return events


def test_first_call_trains_and_caches_second_call_loads(kdviz_home):
    first = _trained()
    assert isinstance(first[0], Started) and any(isinstance(e, StepLosses) for e in first)
    assert first[-1].summary["cached"] is False
    path = teacher_path(TINY)
    assert path.is_file() and path.parent == kdviz_home / "teachers" and is_cached(TINY)
    second = list(prepare_teacher(TINY, "cpu"))
    assert len(second) == 1 and isinstance(second[0], Finished)  # no training events at all
    assert second[0].status == "completed" and second[0].summary["cached"] is True
    assert second[0].summary["teacher"] == first[-1].summary["teacher"]  # accuracy, params, size survive
    assert _same_weights(first[-1].models["teacher"], second[0].models["teacher"])
    assert not second[0].models["teacher"].training


def test_teacher_key_depends_on_the_config():
    assert teacher_key(TINY) == teacher_key(dataclasses.replace(TINY))
    assert teacher_key(TINY) != teacher_key(OTHER) != teacher_key(dataclasses.replace(TINY, epochs=2))
    assert teacher_path(TINY).name.startswith("digits-") and teacher_path(TINY).suffix == ".pt"


def test_label_smoothing_is_part_of_a_teachers_identity_and_zero_keeps_the_old_key():
    """A teacher without label smoothing keeps the key it had before the field existed (its cache file stays
    valid); a smoothed teacher is another teacher."""
    identity = teachers.teacher_identity(TINY, "cpu")
    assert "label_smoothing" not in identity["config"]
    smoothed = dataclasses.replace(TINY, label_smoothing=0.1)
    assert teachers.teacher_identity(smoothed, "cpu")["config"]["label_smoothing"] == 0.1
    assert teacher_key(smoothed, "cpu") != teacher_key(TINY, "cpu")


def test_a_teacher_trained_with_label_smoothing_learns_less_confident_logits(kdviz_home):
    """Label smoothing ε: targets (1 − ε)·one-hot + ε/C; its teacher's largest softmax probabilities stay lower."""
    from kdviz.core.data import load_dataset
    from kdviz.core.engine import predict_logits

    config = dataclasses.replace(TINY, epochs=8)
    plain, _ = get_teacher(config, "cpu")
    smoothed, _ = get_teacher(dataclasses.replace(config, label_smoothing=0.3), "cpu")
    x = load_dataset("digits").val_x
    confidence = [float(predict_logits(model, x).softmax(-1).max(-1).values.mean()) for model in (plain, smoothed)]
    assert confidence[1] < confidence[0] - 0.05, confidence
    with pytest.raises(ValueError, match="label smoothing"):
        list(prepare_teacher(dataclasses.replace(TINY, label_smoothing=1.0), "cpu"))


def test_teacher_key_covers_the_split_the_versions_the_threads_and_the_device(monkeypatch):
    """Everything that changes a teacher's weights but is not in its config changes its key too."""
    from kdviz.core import data

    key = teacher_key(TINY, "cpu")
    monkeypatch.setenv("KDVIZ_THREADS", "3")
    assert teacher_key(TINY, "cpu") != key  # another order of floating-point sums
    monkeypatch.setenv("KDVIZ_THREADS", "1")
    key_one_thread = teacher_key(TINY, "cpu")
    version = data.DATA_VERSION
    monkeypatch.setattr(data, "DATA_VERSION", version + 1)
    assert teacher_key(TINY, "cpu") != key_one_thread  # other data
    monkeypatch.setattr(data, "DATA_VERSION", version)
    info = data.check_dataset_name("digits")
    monkeypatch.setitem(data._REGISTRY, "digits", dataclasses.replace(info, validation_fraction=0.3))
    assert teacher_key(TINY, "cpu") != key_one_thread  # another validation split
    monkeypatch.setitem(data._REGISTRY, "digits", info)
    identity = teachers.teacher_identity(TINY, "cpu")
    assert identity["device_type"] == "cpu" and identity["threads"] == 1
    assert identity["split"] == {"validation_fraction": 0.2, "seed": data.SPLIT_SEED, "version": data.DATA_VERSION}


def test_a_teacher_cached_for_another_split_is_never_reused(monkeypatch):
    """A file whose recorded split differs from today's (the same key, but the data split otherwise) is retrained:
    the cached teacher might have trained on today's validation or test images."""
    _trained()
    path = teacher_path(TINY, "cpu")
    record = torch.load(path, weights_only=True)
    record["split"] = {**record["split"], "train": record["split"]["train"] + 287, "validation": 0}
    torch.save(record, path)
    with pytest.raises(teachers.CacheError, match="another split"):
        load_cached(TINY, "cpu")
    _expect_rebuilt(list(prepare_teacher(TINY, "cpu")), "another split")


def test_get_teacher_returns_the_model_and_its_summary():
    model, summary = get_teacher(TINY, "cpu")
    assert summary["cached"] is False and 0 <= summary["teacher"]["accuracy"] <= 1
    again, summary_again = get_teacher(TINY, "cpu")
    assert summary_again["cached"] is True and _same_weights(model, again)


def _expect_rebuilt(events: list, fragment: str) -> None:
    notices = [e for e in events if isinstance(e, Notice)]
    assert len(notices) == 1 and fragment in notices[0].message and "training it again" in notices[0].message
    assert any(isinstance(e, StepLosses) for e in events)  # it trained again
    assert events[-1].status == "completed" and events[-1].summary["cached"] is False
    model, _ = load_cached(TINY)  # and the rebuilt file is good
    assert _same_weights(model, events[-1].models["teacher"])


def test_garbage_file_is_reported_and_rebuilt():
    path = teacher_path(TINY)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a checkpoint \x00\xff" * 10)
    _expect_rebuilt(list(prepare_teacher(TINY, "cpu")), "cannot read")


def test_truncated_file_is_reported_and_rebuilt():
    _trained()
    path = teacher_path(TINY)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _expect_rebuilt(list(prepare_teacher(TINY, "cpu")), "cannot read")


def test_file_for_another_config_is_reported_and_rebuilt():
    _trained(OTHER)
    os.replace(teacher_path(OTHER), teacher_path(TINY))
    _expect_rebuilt(list(prepare_teacher(TINY, "cpu")), "another config")


def test_file_of_another_format_or_shape_is_reported_and_rebuilt():
    _trained()
    path = teacher_path(TINY)
    record = torch.load(path, weights_only=True)
    record["state_dict"] = {k: v[:1] for k, v in record["state_dict"].items()}  # weights of the wrong shape
    torch.save(record, path)
    _expect_rebuilt(list(prepare_teacher(TINY, "cpu")), "does not fit")
    torch.save({"format": 999}, path)
    _expect_rebuilt(list(prepare_teacher(TINY, "cpu")), "format")


EXECUTED = []


def _record_execution(text):
    EXECUTED.append(text)
    return text


class _Payload:
    """Unpickling this object calls _record_execution: what a malicious checkpoint would do."""

    def __reduce__(self):
        return (_record_execution, ("code ran while loading",))


def test_loading_never_executes_code_from_the_file():
    path = teacher_path(TINY)
    path.parent.mkdir(parents=True)
    torch.save({"format": teachers.FORMAT, "payload": _Payload()}, path)
    EXECUTED.clear()
    events = list(prepare_teacher(TINY, "cpu"))
    assert EXECUTED == []  # torch.load(..., weights_only=True) refused the pickled callable
    assert any(isinstance(e, Notice) for e in events) and events[-1].status == "completed"


def test_loading_uses_weights_only(monkeypatch):
    _trained()
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_cached(TINY)
    assert calls == [True]


def test_the_cache_file_is_written_atomically(monkeypatch):
    _trained()
    folder = teacher_path(TINY).parent
    assert [p.name for p in folder.iterdir()] == [teacher_path(TINY).name]  # no temp files left behind
    good = teacher_path(TINY).read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(paths.os, "replace", crash)
    model, summary = load_cached(TINY)
    with pytest.raises(OSError, match="disk full"):
        teachers.save_teacher(TINY, model, {**summary, "note": "new"})
    assert teacher_path(TINY).read_bytes() == good  # the old file is untouched ...
    assert [p.name for p in folder.iterdir()] == [teacher_path(TINY).name]  # ... and the temp file is gone


def test_a_cancelled_training_is_not_cached():
    events = list(prepare_teacher(TINY, "cpu", should_stop=lambda: True))
    assert events[-1].status == "cancelled" and events[-1].summary["cached"] is False
    assert not is_cached(TINY)


def test_two_sessions_asking_at_once_train_once():
    results = []

    def ask():
        results.append(list(prepare_teacher(TINY, "cpu")))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(events[-1].summary["cached"] for events in results) == [False, True]
    assert _same_weights(results[0][-1].models["teacher"], results[1][-1].models["teacher"])


def test_bad_teacher_config_is_a_value_error():
    with pytest.raises(ValueError, match="'nope'"):
        next(prepare_teacher(dataclasses.replace(TINY, dataset="nope")))
