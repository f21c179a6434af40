"""Real logits for the soft-labels page: the cached default teacher and a student on the default dataset's test images.

This module imports torch (seconds): the page imports it only when the dataset-image source is chosen.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from kdviz.data import Dataset, load_dataset
from kdviz.engine import predict_logits
from kdviz.models import create_model
from kdviz.presets import DEFAULT_TEACHER, get_preset
from kdviz.soft_labels import Logits
from kdviz.teachers import is_cached, load_cached


def _untrained_student(dataset: Dataset) -> nn.Module:
    """The lecture preset's student before any training, from a fixed seed (the same weights every time)."""
    torch.manual_seed(0)
    return create_model(get_preset("lecture").student, dataset.input_shape, dataset.num_classes).eval()


# Where the student's logits come from, by the names of kdviz.soft_labels.STUDENT_MODELS. Issue 4's run manager will
# add "hard" and "kd": the hard-label and KD students of the latest run (loaded from KDVIZ_HOME/runs).
STUDENT_BUILDERS: dict[str, Callable[[Dataset], nn.Module]] = {"untrained": _untrained_student}


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


def load_image_logits(student_model: str = "untrained") -> ImageLogits:
    """Logits of the cached default teacher and the named student; raises CacheError when the cache is unusable."""
    if student_model not in STUDENT_BUILDERS:
        raise ValueError(f"unknown student {student_model!r}: choose one of {', '.join(STUDENT_BUILDERS)}")
    dataset = load_dataset(DEFAULT_TEACHER.dataset)
    teacher, _ = load_cached(DEFAULT_TEACHER)
    student = STUDENT_BUILDERS[student_model](dataset)
    return ImageLogits(dataset.name, dataset.classes, dataset.test_y.numpy(),
                       predict_logits(teacher, dataset.test_x).double().numpy(),
                       predict_logits(student, dataset.test_x).double().numpy(), dataset.to_pixels(dataset.test_x))
