"""Real logits for the soft-labels page: the cached default teacher and a student on the default dataset's test images.

This module imports torch (seconds): the page imports it only when the dataset-image source is chosen.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from kdviz.core.data import Dataset, load_dataset
from kdviz.core.engine import predict_logits
from kdviz.core.models import create_model
from kdviz.core.presets import DEFAULT_TEACHER, get_preset
from kdviz.runs.store import RunStore
from kdviz.views.soft_labels import Logits
from kdviz.core.teachers import is_cached, load_cached


class NoRunYet(LookupError):
    """The trained students were asked for, but no run of the default teacher has finished yet."""


def _untrained_student(dataset: Dataset, run_id: str | None) -> nn.Module:
    """The lecture preset's student before any training, from a fixed seed (the same weights every time)."""
    torch.manual_seed(0)
    return create_model(get_preset("lecture").student, dataset.input_shape, dataset.num_classes).eval()


def latest_run() -> str | None:
    """The newest completed run that distilled the default teacher (whose students are saved), or None."""
    store, teacher = RunStore(), json.loads(json.dumps(dataclasses.asdict(DEFAULT_TEACHER)))
    for run_id in store.run_ids():
        status, record = store.read_json(run_id, "status.json") or {}, store.read_json(run_id, "config.json") or {}
        if status.get("state") == "completed" and record.get("config", {}).get("teacher") == teacher \
                and store.students_path(run_id).is_file():
            return run_id
    return None


def _trained_student(role: str) -> Callable[[Dataset, str | None], nn.Module]:
    def build(dataset: Dataset, run_id: str | None) -> nn.Module:
        if run_id is None:
            raise NoRunYet("no distillation of the default teacher has finished yet: start one (the lecture preset) "
                           "on the Live distillation page")
        return RunStore().load_students(run_id)[1][role]

    return build


# Where the student's logits come from, by the names of kdviz.views.soft_labels.STUDENT_MODELS: an untrained student, or
# the hard-label / KD student of the latest finished run of the default teacher (KDVIZ_HOME/runs).
STUDENT_BUILDERS: dict[str, Callable[[Dataset, str | None], nn.Module]] = {
    "untrained": _untrained_student, "hard": _trained_student("hard"), "kd": _trained_student("kd")}


@dataclass(frozen=True)
class ImageLogits:
    """The teacher's and one student's logits on every test image of the default teacher's dataset."""

    dataset: str
    classes: tuple[str, ...]
    labels: np.ndarray   # (N,) true classes
    teacher: np.ndarray  # (N, C) logits
    student: np.ndarray  # (N, C) logits
    pixels: np.ndarray   # (N, H, W, channels) uint8, for thumbnails

    def __len__(self) -> int:
        return len(self.labels)

    def example(self, index: int) -> Logits:
        return Logits(self.classes, tuple(map(float, self.teacher[index])), tuple(map(float, self.student[index])),
                      int(self.labels[index]))

    def thumbnail(self, index: int, scale: int = 5) -> np.ndarray:
        """(H·scale, W·scale) or (H·scale, W·scale, 3) uint8, enlarged without blurring."""
        image = self.pixels[index].repeat(scale, axis=0).repeat(scale, axis=1)
        return image[..., 0] if image.shape[-1] == 1 else image


def teacher_ready() -> bool:
    return is_cached(DEFAULT_TEACHER)


def load_image_logits(student_model: str = "untrained", run_id: str | None = None) -> ImageLogits:
    """Logits of the cached default teacher and the named student (of run_id, for trained ones).

    Raises CacheError when the teacher's cache is unusable and NoRunYet when a trained student has no run.
    """
    if student_model not in STUDENT_BUILDERS:
        raise ValueError(f"unknown student {student_model!r}: choose one of {', '.join(STUDENT_BUILDERS)}")
    dataset = load_dataset(DEFAULT_TEACHER.dataset)
    teacher, _ = load_cached(DEFAULT_TEACHER)
    student = STUDENT_BUILDERS[student_model](dataset, run_id)
    return ImageLogits(dataset.name, dataset.classes, dataset.test_y.numpy(),
                       predict_logits(teacher, dataset.test_x).double().numpy(),
                       predict_logits(student, dataset.test_x).double().numpy(), dataset.to_pixels(dataset.test_x))
