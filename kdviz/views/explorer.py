"""The image explorer without Streamlit: which teacher, the gallery's order, dark knowledge, and a run's students.

Every model's logits on the whole test set are computed once (a few ms for the small offline sets, seconds for
Fashion-MNIST's 10 000 images through a CNN on a CPU); picking an image is then a row lookup and a softmax, which
keeps the page's reaction to a click far below 200 ms.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from kdviz.core import kd, presets
from kdviz.core.data import Dataset, offline_names
from kdviz.core.engine import DistillConfig, TeacherConfig, initial_student, predict_logits
from kdviz.core.roles import STUDENTS
from kdviz.runs.store import RunStore
from kdviz.views.query import DEFAULT_TEMPERATURE, format_number, parse_image, parse_temperature

GALLERY_SIZE = 60
ORDERS = {"mixed": "a few of each class", "unsure": "most unsure first", "mistakes": "teacher's mistakes only",
          "index": "test-set order"}
QUERY_KEYS = ("dataset", "image", "temperature")  # the URL parameters this page writes; others are left alone


# ---- which teacher, which preset ---------------------------------------------------------------------------------

def teacher_for(dataset: str) -> TeacherConfig | None:
    """The teacher the explorer uses for a dataset: the app's default teacher, else the first preset's that fits.

    Read at call time from kdviz.core.presets, so tests can swap presets.DEFAULT_TEACHER for a tiny one.
    """
    if presets.DEFAULT_TEACHER.dataset == dataset:
        return presets.DEFAULT_TEACHER
    return next((config.teacher for _, config in presets.PRESETS.values() if config.teacher.dataset == dataset), None)


def preset_for(dataset: str) -> str | None:
    """The preset a user is offered to run for this dataset (mnist5k → lecture, digits → quick, fashion-mnist →
    fashion)."""
    return next((name for name, (_, config) in presets.PRESETS.items() if config.dataset == dataset), None)


def run_config_for(dataset: str) -> DistillConfig:
    """The preset's distillation with the explorer's teacher, so its students learn from the teacher shown here."""
    return dataclasses.replace(presets.get_preset(preset_for(dataset)), teacher=teacher_for(dataset))


def explorable_datasets() -> list[str]:
    """Offline datasets whose teacher we know (the dataset selectbox's options), asked now: Fashion-MNIST is one
    once Debian's dataset-fashion-mnist is installed."""
    return [name for name in offline_names() if teacher_for(name) is not None and preset_for(name) is not None]


# ---- the URL -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Query:
    dataset: str
    image: int
    temperature: float


def parse_query(params: Mapping[str, str], datasets: list[str]) -> tuple[Query, list[str]]:
    """URL parameters → the page's state, with one notice per value that was ignored or changed."""
    notices = []
    dataset = params.get("dataset", datasets[0])
    if dataset not in datasets:
        notices.append(f"The dataset in the link ({dataset!r}) cannot be explored offline; showing {datasets[0]}.")
        dataset = datasets[0]
    image = parse_image(params["image"], notices) if "image" in params else 0
    temperature = parse_temperature(params["temperature"], notices) if "temperature" in params \
        else DEFAULT_TEMPERATURE
    return Query(dataset, image, temperature), notices


def to_query(dataset: str, image: int, temperature: float) -> dict[str, str]:
    """The page's state as URL parameters (QUERY_KEYS; the inverse of parse_query)."""
    return {"dataset": dataset, "image": str(image), "temperature": format_number(temperature)}


def clamp_image(image: int, n_images: int) -> tuple[int, str | None]:
    if 0 <= image < n_images:
        return image, None
    return 0, f"The test set has {n_images} images (0 to {n_images - 1}); showing image 0 instead of {image}."


# ---- the gallery -------------------------------------------------------------------------------------------------

def gallery(labels: np.ndarray, teacher_logits: np.ndarray, order: str, true_class: int | None = None,
            size: int = GALLERY_SIZE) -> np.ndarray:
    """Indices of the test images to show, optionally of one true class.

    mixed: the classes in turn (the first image of each class, then the second, ...); unsure: by the teacher's
    entropy at T = 1, most unsure first (where soft labels say the most); mistakes: only the images the teacher gets
    wrong, most unsure first; index: test-set order.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown gallery order {order!r}: choose one of {', '.join(ORDERS)}")
    keep = np.ones(len(labels), dtype=bool) if true_class is None else labels == true_class
    if order == "mistakes":
        keep &= teacher_logits.argmax(-1) != labels
    index = np.flatnonzero(keep)
    if order == "mixed":
        rank = np.zeros(len(index), dtype=np.int64)  # how many images of the same class come before each one
        for c in np.unique(labels[index]):
            members = labels[index] == c
            rank[members] = np.arange(members.sum())
        index = index[np.lexsort((labels[index], rank))]
    elif order in ("unsure", "mistakes"):
        entropy = kd.entropy(teacher_logits[index])
        index = index[np.argsort(-entropy, kind="stable")]
    return index[:size]


def gallery_captions(shown: np.ndarray, labels: np.ndarray, teacher_logits: np.ndarray, classes) -> list[str]:
    """Under each thumbnail: the true class, and the teacher's guess when it is wrong ("4 → 9")."""
    guesses = teacher_logits[shown].argmax(-1)
    return [classes[labels[i]] + ("" if g == labels[i] else f" → {classes[g]}") for i, g in zip(shown, guesses)]


# ---- dark knowledge ----------------------------------------------------------------------------------------------

def dark_knowledge(teacher_logits: np.ndarray, labels: np.ndarray, num_classes: int, temperature: float
                   ) -> np.ndarray:
    """(C, C): row i is the teacher's mean softmax at T over the test images of true class i; each row sums to one.

    A class without test images gets a row of NaN.
    """
    probs = kd.softmax(teacher_logits, temperature)  # (N, C)
    matrix = np.full((num_classes, num_classes), np.nan)
    for c in range(num_classes):
        rows = probs[labels == c]
        if len(rows):
            matrix[c] = rows.mean(0)
    return matrix


def most_alike(matrix: np.ndarray, k: int = 3) -> list[tuple[int, int, float]]:
    """The k class pairs (i < j) the teacher confuses most: mean of matrix[i, j] and matrix[j, i], largest first."""
    symmetric = (matrix + matrix.T) / 2
    pairs = [(i, j, float(symmetric[i, j])) for i in range(len(matrix)) for j in range(i + 1, len(matrix))
             if np.isfinite(symmetric[i, j])]
    return sorted(pairs, key=lambda pair: -pair[2])[:k]


def off_diagonal_mass(matrix: np.ndarray) -> float:
    """Mean probability the teacher gives to the wrong classes: the amount of dark knowledge on show at this T."""
    finite = np.isfinite(matrix).all(1)
    return float(1 - np.diag(matrix)[finite].mean()) if finite.any() else math.nan


def cell_images(teacher_logits: np.ndarray, labels: np.ndarray, true_class: int, other_class: int,
                temperature: float, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The k test images of true_class to which the teacher gives other_class the highest probability at T, and
    those probabilities."""
    index = np.flatnonzero(labels == true_class)
    p = kd.softmax(teacher_logits[index], temperature)[:, other_class]
    best = np.argsort(-p, kind="stable")[:k]
    return index[best], p[best]


# ---- models and their logits -------------------------------------------------------------------------------------

def test_logits(model: torch.nn.Module, dataset: Dataset) -> np.ndarray:
    """(N, C) logits of a model on the whole test set, as float64 numpy."""
    return predict_logits(model.cpu(), dataset.test_x).double().numpy()


def untrained_student(config: DistillConfig, dataset: Dataset) -> torch.nn.Module:
    """The student as both of a run's students start: engine.initial_student (the weights distill copies), in eval."""
    return initial_student(config, dataset).eval()


def normalise(model_input: np.ndarray, dataset: Dataset) -> torch.Tensor:
    """(C, H, W) in [0, 1] → a (1, C, H, W) batch normalised like the dataset's images."""
    return ((torch.as_tensor(model_input, dtype=torch.float32) - dataset.mean) / dataset.std)[None]


def logits_of(models: dict[str, torch.nn.Module], x: torch.Tensor) -> dict[str, np.ndarray]:
    """{role: (C,) logits} of each model on one normalised image x (1, C, H, W)."""
    return {role: predict_logits(model, x)[0].double().numpy() for role, model in models.items()}


# ---- a run's history -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class History:
    """The students' logits on the probe images at every epoch of a run (from its Snapshot events)."""

    probe_indices: tuple[int, ...]  # (P,) test-set indices
    epochs: tuple[int, ...]  # (E,), 0 is before training
    logits: dict  # {"hard": (E, P, C), "kd": (E, P, C)} arrays

    def position(self, image: int) -> int | None:
        return self.probe_indices.index(image) if image in self.probe_indices else None


def read_history(events: list[dict]) -> History | None:
    """History from a run's event log (the distill phase's Started and Snapshots), or None if it has none."""
    started = next((e for e in events if e.get("event") == "Started" and e.get("kind") == "distill"), None)
    snapshots = [e for e in events if e.get("event") == "Snapshot"]
    if started is None or not snapshots or not started.get("probe_indices"):
        return None
    roles = [role for role in STUDENTS if role in snapshots[0]["logits"]]
    logits = {role: np.array([s["logits"][role] for s in snapshots], dtype=np.float64) for role in roles}
    return History(tuple(started["probe_indices"]), tuple(s["epoch"] for s in snapshots), logits)


def nearest_probes(history: History, labels: np.ndarray, label: int, k: int = 3) -> list[int]:
    """Probe images of the same true class (to offer a jump to an image whose epochs were recorded)."""
    return [i for i in history.probe_indices if labels[i] == label][:k]


def kl_over_epochs(teacher_logits: np.ndarray, history: History, position: int, temperature: float
                   ) -> dict[str, np.ndarray]:
    """{role: (E,)} KL(teacher ‖ student) at T for one probe image at each recorded epoch."""
    return {role: kd.kl_divergence(np.broadcast_to(teacher_logits, logits[:, position].shape), logits[:, position],
                                   temperature)
            for role, logits in history.logits.items()}


# ---- one image's summary ----------------------------------------------------------------------------------------

def summary_rows(classes: tuple[str, ...], teacher: np.ndarray, models: dict[str, np.ndarray], label: int | None,
                 temperature: float, names: dict[str, str]) -> list[dict]:
    """One row per model: its guess, its probability of the true class, and its KL from the teacher at T."""
    rows = []
    for role, logits in {"teacher": teacher, **models}.items():
        probs = kd.softmax(logits, temperature)
        guess = int(probs.argmax())
        row = {"model": names[role], "guess": f"{classes[guess]} ({probs[guess]:.0%})"}
        if label is not None:
            row["p(true class)"] = float(probs[label])
        row["KL from teacher"] = float(kd.kl_divergence(teacher, logits, temperature))
        rows.append(row)
    return rows


# ---- everything the page needs about the students ----------------------------------------------------------------

@dataclass(frozen=True)
class Students:
    """The untrained student and, when a run finished, its hard-label and KD students, with their test logits."""

    run_id: str | None
    config: DistillConfig  # the run's config, or the preset's when there is no run
    models: dict  # {role: nn.Module}: "untrained" always, "hard" and "kd" from the run
    logits: dict  # {role: (N, C) logits on the test set}
    history: History | None  # the run's per-epoch logits on the probe images
    notice: str | None = None  # why the latest run's students could not be used, if so


def load_students(dataset: Dataset, run_id: str | None, store: RunStore | None = None) -> Students:
    """Students of run_id (None: only the untrained student of the dataset's preset). A damaged students.pt is
    reported in .notice and the run is skipped: the page keeps working with the untrained student."""
    store = store or RunStore()
    config, models, history, notice = run_config_for(dataset.name), {}, None, None
    if run_id is not None:
        try:
            config, models = store.load_students(run_id)
            history = read_history(store.read_events(run_id))
        except Exception as error:  # noqa: BLE001 — a damaged file must not take the page down
            notice = f"The students of run {run_id} could not be loaded ({type(error).__name__}); " \
                     "run the preset again to get new ones."
            run_id, config, models = None, run_config_for(dataset.name), {}
    models = {"untrained": untrained_student(config, dataset), **models}
    logits = {role: test_logits(model, dataset) for role, model in models.items()}
    return Students(run_id, config, models, logits, history, notice)
