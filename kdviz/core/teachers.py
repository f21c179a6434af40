"""On-disk cache of trained teachers under KDVIZ_HOME/teachers, keyed by everything that changes their weights.

A teacher's identity is its config plus what the config does not say but the weights depend on: the dataset's split
(so a cached teacher can never have seen today's validation or test images), the data and cache format versions,
the CPU thread count (the order of floating-point sums) and the device type.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
import threading
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from kdviz.core.data import check_dataset_name, load_dataset
from kdviz.core.engine import (Event, Finished, Notice, TeacherConfig, check_teacher_config, resolve_device, run_to_end,
                               thread_count, train_teacher)
from kdviz.core.models import create_model
from kdviz.core.paths import atomic_write_bytes, teachers_dir

FORMAT = 2
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def teacher_identity(config: TeacherConfig, device: str = "auto") -> dict:
    """Everything that changes a teacher's trained weights, as plain JSON (what the cache key hashes)."""
    fields = dataclasses.asdict(config)
    if not fields["label_smoothing"]:  # added later: a teacher without it keeps the cache key it always had
        del fields["label_smoothing"]
    identity = {"config": json.loads(json.dumps(fields)), "format": FORMAT,
                "split": check_dataset_name(config.dataset).split_spec, "threads": thread_count(),
                "device_type": resolve_device(device).type}
    if identity["device_type"] == "cuda":  # a GPU trains convolutional teachers in bf16 (engine.DeviceOptions)
        identity["precision"] = "auto: bf16 autocast for models with convolutions"
    return identity


def teacher_key(config: TeacherConfig, device: str = "auto") -> str:
    """A stable hash of the teacher's identity (config, split, versions, thread count, device type)."""
    text = json.dumps(teacher_identity(config, device), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def teacher_path(config: TeacherConfig, device: str = "auto") -> Path:
    return teachers_dir() / f"{config.dataset}-{teacher_key(config, device)}.pt"


def is_cached(config: TeacherConfig, device: str = "auto") -> bool:
    return teacher_path(config, device).is_file()


class CacheError(Exception):
    """A cache file that cannot be used: corrupt, from another version, or for another config."""


def load_cached(config: TeacherConfig, device: str = "auto") -> tuple[nn.Module, dict]:
    """Load a cached teacher safely (weights_only) and check it matches its identity and today's split; raise
    CacheError if not."""
    path = teacher_path(config, device)
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise CacheError(f"cannot read {path.name} ({type(error).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CacheError(f"{path.name} is not a kdviz teacher of format {FORMAT}")
    if record.get("identity") != teacher_identity(config, device):
        raise CacheError(f"{path.name} holds a teacher for another config")
    dataset = load_dataset(config.dataset)
    if record.get("split") != dataset.split:  # the same spec, but the data on disk split into other sizes
        raise CacheError(f"{path.name} was trained on another split of {config.dataset}")
    model = create_model(config.model, dataset.input_shape, dataset.num_classes)
    try:
        model.load_state_dict(record["state_dict"])
    except Exception as error:
        raise CacheError(f"{path.name} does not fit the model ({type(error).__name__})") from None
    _touch(path)
    return model.eval(), record["summary"]


def _touch(path: Path) -> None:
    """A teacher's file's access time, set here explicitly (mounts with noatime or relatime do not keep it), says when
    it was last used: the disk quota removes the least recently used first. Its modification time stays when it was
    written: the pages' caches of a loaded teacher are keyed by it (a rebuilt teacher is loaded again)."""
    try:
        os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))  # to the nanosecond: caches compare it
    except OSError:
        pass


def cached_teachers() -> list[tuple[Path, int, float]]:
    """Every cached teacher file as (path, bytes, last used), least recently used first."""
    found = []
    for path in teachers_dir().glob("*.pt"):
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append((path, stat.st_size, max(stat.st_atime, stat.st_mtime)))
    return sorted(found, key=lambda item: item[2])


def save_teacher(config: TeacherConfig, model: nn.Module, summary: dict, device: str = "auto") -> Path:
    record = {"format": FORMAT, "identity": teacher_identity(config, device),
              "split": load_dataset(config.dataset).split, "summary": summary,
              "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    buffer = io.BytesIO()
    torch.save(record, buffer)
    path = teacher_path(config, device)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def prepare_teacher(config: TeacherConfig, device: str = "auto", should_stop=None) -> Iterator[Event]:
    """Yield a cached teacher at once, or train it (yielding its events), cache it, and yield it.

    The last event is Finished with the model in models["teacher"] and summary["cached"] telling which path ran.
    A corrupt or mismatched cache file is reported with a Notice and rebuilt.
    """
    check_teacher_config(config)
    key = teacher_key(config, device)
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:  # two sessions asking for the same teacher train it once
        if is_cached(config, device):
            try:
                model, summary = load_cached(config, device)
                yield Finished("completed", {**summary, "cached": True}, {"teacher": model})
                return
            except CacheError as error:
                yield Notice(f"the cached teacher could not be used ({error}); training it again")
        finished = None
        for event in train_teacher(config, device, should_stop):
            if isinstance(event, Finished):
                finished = event
                break
            yield event
        if finished.status == "completed":
            save_teacher(config, finished.models["teacher"], finished.summary, device)
        yield Finished(finished.status, {**finished.summary, "cached": False}, finished.models)


def get_teacher(config: TeacherConfig, device: str = "auto") -> tuple[nn.Module, dict]:
    """The trained teacher for config (from the cache when possible) and its summary."""
    finished = run_to_end(prepare_teacher(config, device))
    if finished.status != "completed":
        raise ValueError(f"the teacher could not be trained: {finished.status}")
    return finished.models["teacher"], finished.summary
