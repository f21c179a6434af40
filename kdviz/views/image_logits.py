"""The soft-labels page's dataset images: one test image's teacher and student logits, from the explorer's models.

The teacher, its test logits and the students (the untrained one, and those of the latest run of that teacher) are
the image explorer's (kdviz.views.explorer, cached once in kdviz.ui.models): both pages show the same numbers.
This module imports torch (seconds): the page imports it only when the dataset-image source is chosen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdviz.core.data import Dataset
from kdviz.core.roles import ROLE_NAMES, STUDENT_ROLES
from kdviz.views.explorer import Students
from kdviz.views.soft_labels import Logits


class NoRunYet(LookupError):
    """A trained student was asked for, but no run of the teacher shown has finished yet."""


@dataclass(frozen=True)
class ImageLogits:
    """The teacher's and one student's logits on every test image of a dataset."""

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


def image_logits(dataset: Dataset, pixels: np.ndarray, teacher_logits: np.ndarray, students: Students,
                 role: str) -> ImageLogits:
    """The teacher's test logits beside the student of this role (kdviz.core.roles.STUDENT_ROLES).

    Raises NoRunYet when a trained student is asked for and no run of this teacher has finished.
    """
    if role not in STUDENT_ROLES:
        raise ValueError(f"unknown student {role!r}: choose one of {', '.join(STUDENT_ROLES)}")
    if role not in students.logits:
        raise NoRunYet(f"no distillation of this teacher has finished yet, so there is no {ROLE_NAMES[role]}: start "
                       "one (the lecture preset) on the Live distillation page")
    return ImageLogits(dataset.name, dataset.classes, dataset.test_y.numpy(), teacher_logits, students.logits[role],
                       pixels)
