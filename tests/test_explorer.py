"""The image explorer's library: teacher choice, gallery order, dark knowledge, runs' students and probe history."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from kdviz.views import explorer

from kdviz.core import data, kd, presets
from kdviz.core.engine import DistillConfig, Snapshot, Started, TeacherConfig, distill, event_to_dict, probe_indices
from kdviz.core.models import ModelSpec, create_model
from kdviz.runs.store import RunStore, new_run_id

CLASSES = tuple("0123456789")


def _logits(seed=0, n=200, c=10):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % c
    logits = rng.normal(size=(n, c)) + 4 * np.eye(c)[labels]  # mostly right, some mistakes
    return labels, logits


# ---- teacher and presets ---------------------------------------------------------------------------------------

def test_teachers_come_from_presets_and_the_default_teacher_can_be_swapped(monkeypatch):
    assert explorer.teacher_for("mnist5k") == presets.DEFAULT_TEACHER
    assert explorer.teacher_for("digits") == presets.get_preset("quick").teacher
    assert explorer.teacher_for("cifar10") is None
    assert explorer.explorable_datasets()[:2] == ["mnist5k", "digits"]
    assert ("fashion-mnist" in explorer.explorable_datasets()) == (data.fashion_mnist_dir() is not None)
    assert explorer.teacher_for("fashion-mnist") == presets.get_preset("fashion").teacher
    assert explorer.preset_for("mnist5k") == "lecture" and explorer.preset_for("digits") == "quick"
    tiny = TeacherConfig("mnist5k", ModelSpec("mlp", 8, 1), epochs=1, augment=0)
    monkeypatch.setattr(presets, "DEFAULT_TEACHER", tiny)
    assert explorer.teacher_for("mnist5k") == tiny
    assert explorer.run_config_for("mnist5k").teacher == tiny  # the offered run learns from the teacher shown


# ---- the URL ---------------------------------------------------------------------------------------------------

def test_parse_query_valid_and_invalid():
    query, notices = explorer.parse_query({"dataset": "digits", "image": "12", "temperature": "4"}, ["mnist5k", "digits"])
    assert query == explorer.Query("digits", 12, 4.0) and notices == []
    query, notices = explorer.parse_query({"dataset": "cifar10", "image": "-3", "temperature": "abc"},
                                          ["mnist5k", "digits"])
    assert query == explorer.Query("mnist5k", 0, 1.0) and len(notices) == 3
    query, notices = explorer.parse_query({"temperature": "3.3"}, ["mnist5k"])
    assert query.temperature == 3.0 and "3.3" in notices[0] and "not on the slider" in notices[0]
    assert explorer.to_query("digits", 12, 4.0) == {"dataset": "digits", "image": "12", "temperature": "4"}
    assert set(explorer.to_query("digits", 12, 4.0)) == set(explorer.QUERY_KEYS)


@pytest.mark.parametrize("params", [{"temperature": "3.3"}, {"temperature": "0"}, {"temperature": "1000"},
                                    {"temperature": "hot"}, {"image": "-3"}, {"image": "²"}, {"image": "123456789"}])
def test_the_explorer_and_the_soft_labels_page_read_a_link_the_same_way(params):
    """One parser per kind of value (kdviz.views.query): the same link gives the same value and the same notice."""
    from kdviz.views import soft_labels

    query, notices = explorer.parse_query(params, ["mnist5k"])
    state, soft_notices = soft_labels.parse_query(params)
    key = next(iter(params))
    assert getattr(query, key) == getattr(state, key) and notices == soft_notices and len(notices) == 1
    image, notice = explorer.clamp_image(999, 100)
    assert image == 0
    assert "100 images" in notice and "0 to 99" in notice and "showing image 0 instead of 999" in notice
    image, notice = explorer.clamp_image(-3, 100)
    assert image == 0 and "instead of -3" in notice
    assert explorer.clamp_image(100, 100)[0] == 0  # one past the end is out of range too
    assert explorer.clamp_image(5, 100) == (5, None)
    assert explorer.clamp_image(99, 100) == (99, None)


# ---- gallery ---------------------------------------------------------------------------------------------------

def test_gallery_orders_filters_and_mistakes():
    labels, logits = _logits()
    assert explorer.gallery(labels, logits, "index").tolist() == list(range(60))
    by_class = np.argsort(labels, kind="stable")  # a test set sorted by class, as mnist5k's is
    mixed = explorer.gallery(labels[by_class], logits[by_class], "mixed", size=20)
    assert labels[by_class][mixed].tolist() == list(range(10)) * 2  # every class in turn
    assert explorer.gallery(labels, logits, "mixed", true_class=3).tolist() == np.flatnonzero(labels == 3).tolist()
    only_threes = explorer.gallery(labels, logits, "index", true_class=3)
    assert (labels[only_threes] == 3).all() and len(only_threes) == 20
    unsure = explorer.gallery(labels, logits, "unsure")
    entropy = kd.entropy(logits[unsure])
    assert (np.diff(entropy) <= 1e-12).all()
    assert entropy[0] == pytest.approx(kd.entropy(logits).max())
    mistakes = explorer.gallery(labels, logits, "mistakes", size=1000)
    wrong = np.flatnonzero(logits.argmax(-1) != labels)
    assert sorted(mistakes.tolist()) == wrong.tolist() and len(wrong) > 0
    with pytest.raises(ValueError, match="gallery order"):
        explorer.gallery(labels, logits, "random")


def test_gallery_captions_name_the_teachers_wrong_guess():
    labels = np.array([4, 4])
    logits = np.zeros((2, 10))
    logits[0, 4] = logits[1, 9] = 5
    assert explorer.gallery_captions(np.array([0, 1]), labels, logits, CLASSES) == ["4", "4 → 9"]


# ---- dark knowledge --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 100.0])
def test_dark_knowledge_rows_sum_to_one(temperature):
    labels, logits = _logits()
    matrix = explorer.dark_knowledge(logits, labels, 10, temperature)
    assert matrix.shape == (10, 10)
    np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-12)
    c = 3  # independent oracle: mean of the softmax over class 3's rows
    np.testing.assert_allclose(matrix[c], kd.softmax(logits[labels == c], temperature).mean(0))


def test_dark_knowledge_softens_with_temperature_and_marks_empty_classes():
    labels, logits = _logits()
    cold, hot = (explorer.off_diagonal_mass(explorer.dark_knowledge(logits, labels, 10, t)) for t in (1.0, 20.0))
    assert cold < hot < 0.9 + 1e-9
    wider = np.concatenate([logits, np.zeros((len(logits), 1))], axis=1)
    matrix = explorer.dark_knowledge(wider, labels, 11, 1.0)  # class 10 has no test images
    assert np.isnan(matrix[10]).all() and np.isfinite(matrix[:10]).all()


def test_most_alike_finds_the_planted_pair():
    matrix = np.full((10, 10), 0.01)
    np.fill_diagonal(matrix, 0.9)
    matrix[4, 9], matrix[9, 4] = 0.2, 0.1
    assert explorer.most_alike(matrix, 1) == [(4, 9, pytest.approx(0.15))]


def test_cell_images_are_of_the_true_class_ranked_by_the_other_class():
    labels, logits = _logits()
    shown, probabilities = explorer.cell_images(logits, labels, 4, 9, 2.0, k=5)
    assert (labels[shown] == 4).all() and len(shown) == 5
    assert (np.diff(probabilities) <= 0).all()
    np.testing.assert_allclose(probabilities, kd.softmax(logits[shown], 2.0)[:, 9])


# ---- the engine's probe set ------------------------------------------------------------------------------------

def test_probe_indices_are_class_balanced_deterministic_and_sorted():
    labels = torch.tensor([3, 1, 1, 0, 3, 2, 0, 0, 1, 2, 2, 3, 0])
    probe = probe_indices(labels, 8)
    assert probe == tuple(sorted(probe)) == probe_indices(labels, 8)
    assert sorted(labels[list(probe)].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert probe == (0, 1, 2, 3, 4, 5, 6, 9)  # the first two test images of each class
    assert probe_indices(labels, 0) == () and len(probe_indices(labels, 100)) == len(labels)


TINY_RUN = DistillConfig(TeacherConfig("digits", ModelSpec("mlp", 16, 1), epochs=1, batch_size=64, augment=0),
                         ModelSpec("mlp", 8, 1), epochs=2, batch_size=64, train_subset=100, device="cpu",
                         probe_size=20)


def test_untrained_student_is_the_runs_initial_weights_and_history_reads_the_snapshots():
    from kdviz.core.data import load_dataset

    teacher = create_model(TINY_RUN.teacher.model, (1, 8, 8), 10)
    events = [event_to_dict(e) for e in distill(TINY_RUN, teacher)
              if isinstance(e, (Started, Snapshot))]
    history = explorer.read_history([{"phase": "distill", **e} for e in events])
    dataset = load_dataset("digits")
    assert history.probe_indices == probe_indices(dataset.test_y, 20)
    assert sorted(set(dataset.test_y[list(history.probe_indices)].tolist())) == list(range(10))
    assert history.epochs == (0, 1, 2) and history.logits["kd"].shape == (3, 20, 10)
    untrained = explorer.untrained_student(TINY_RUN, dataset)
    before = torch.random.get_rng_state()
    expected = explorer.test_logits(explorer.untrained_student(TINY_RUN, dataset), dataset)
    assert torch.equal(before, torch.random.get_rng_state())  # the global RNG is left alone
    np.testing.assert_allclose(expected[list(history.probe_indices)], history.logits["hard"][0], atol=1e-5)
    assert history.position(history.probe_indices[3]) == 3 and history.position(-1) is None
    labels = dataset.test_y.numpy()
    assert all(labels[i] == 5 for i in explorer.nearest_probes(history, labels, 5))
    kl = explorer.kl_over_epochs(expected[history.probe_indices[0]], history, 0, 2.0)
    assert kl["hard"][0] == pytest.approx(0, abs=1e-6) and kl["kd"].shape == (3,)
    assert untrained.training is False


def test_read_history_without_snapshots_is_none():
    assert explorer.read_history([]) is None
    assert explorer.read_history([{"event": "Started", "kind": "distill", "probe_indices": []}]) is None


# ---- runs on disk ----------------------------------------------------------------------------------------------

def _fake_run(store: RunStore, run_id: str, dataset: str, state: str, students: bytes | None,
              teacher: TeacherConfig | None = None) -> None:
    teacher = teacher or dataclasses.replace(TINY_RUN.teacher, dataset=dataset)
    config = dataclasses.asdict(dataclasses.replace(TINY_RUN, teacher=teacher))
    store.create(run_id, {"config": config, "owner": "test", "created": 0})
    store.write_status(run_id, {"state": state})
    if students is not None:
        store.students_path(run_id).write_bytes(students)


def test_latest_completed_skips_other_teachers_unfinished_runs_and_runs_without_students(kdviz_home):
    store = RunStore()
    digits, mnist = (dataclasses.replace(TINY_RUN.teacher, dataset=name) for name in ("digits", "mnist5k"))
    assert store.latest_completed(digits) is None
    _fake_run(store, "20260101-000000-aaaaaa", "digits", "completed", b"x")
    _fake_run(store, "20260101-000001-bbbbbb", "digits", "cancelled", b"x")
    _fake_run(store, "20260101-000002-cccccc", "mnist5k", "completed", b"x")
    _fake_run(store, "20260101-000003-dddddd", "digits", "completed", None)
    assert store.latest_completed(digits) == "20260101-000000-aaaaaa"
    assert store.latest_completed(mnist) == "20260101-000002-cccccc"


def test_a_newer_run_of_another_teacher_on_the_same_dataset_is_never_paired_with_this_teacher(kdviz_home):
    """The explorer once showed the students of the latest run on the *dataset* beside a teacher they never learnt
    from: the run's recorded teacher must be the teacher shown."""
    store = RunStore()
    shown = TINY_RUN.teacher
    other = dataclasses.replace(shown, model=ModelSpec("mlp", 64, 2))  # same dataset, another teacher
    _fake_run(store, "20260101-000000-aaaaaa", "digits", "completed", b"x", teacher=shown)
    _fake_run(store, "20260101-000005-eeeeee", "digits", "completed", b"x", teacher=other)  # newer
    _fake_run(store, "20260101-000006-ffffff", "digits", "completed", b"x",
              teacher=dataclasses.replace(shown, seed=1))  # the same architecture, trained from another seed
    assert store.latest_completed(shown) == "20260101-000000-aaaaaa"
    assert store.latest_completed(other) == "20260101-000005-eeeeee"
    assert store.latest_completed(dataclasses.replace(shown, epochs=7)) is None


def test_the_explorer_loads_no_students_of_another_teacher(kdviz_home, monkeypatch):
    """End to end through the one lookup the pages use (kdviz.ui.models.students): only another teacher's run on
    the dataset, so only the untrained student is shown."""
    from kdviz import ui

    store = RunStore()
    other = dataclasses.replace(TINY_RUN, teacher=dataclasses.replace(TINY_RUN.teacher, model=ModelSpec("mlp", 64, 1)))
    teacher = create_model(other.teacher.model, (1, 8, 8), 10)
    run_id = new_run_id()
    events = list(distill(other, teacher))
    finished = events[-1]
    store.create(run_id, {"config": dataclasses.asdict(other), "owner": "test", "created": 0})
    store.append_events(run_id, [{"phase": "distill", **event_to_dict(e)} for e in events[:-1]])
    store.write_status(run_id, {"state": "completed"})
    torch.save({"config": dataclasses.asdict(other), **{f"{role}_state_dict": model.state_dict()
                                                        for role, model in finished.models.items()}},
               store.students_path(run_id))
    monkeypatch.setattr(explorer, "teacher_for", {"digits": TINY_RUN.teacher}.get)
    monkeypatch.setattr(explorer, "run_config_for", lambda name: TINY_RUN)
    students = ui.students("digits")
    assert students.run_id is None and list(students.logits) == ["untrained"]
    monkeypatch.setattr(explorer, "teacher_for", {"digits": other.teacher}.get)
    students = ui.students("digits")
    assert students.run_id == run_id and list(students.logits) == ["untrained", "hard", "kd"]
    probe = list(students.history.probe_indices)  # with a run, the untrained student is that run's starting point
    np.testing.assert_allclose(students.logits["untrained"][probe], students.history.logits["hard"][0], atol=1e-5)


def test_damaged_students_file_is_reported_and_the_page_keeps_the_untrained_student(kdviz_home, monkeypatch):
    from kdviz.core.data import load_dataset

    monkeypatch.setattr(explorer, "run_config_for", lambda name: TINY_RUN)
    store = RunStore()
    run_id = new_run_id()
    _fake_run(store, run_id, "digits", "completed", b"not a torch file")
    students = explorer.load_students(load_dataset("digits"), run_id, store)
    assert students.run_id is None and list(students.models) == ["untrained"]
    assert "could not be loaded" in students.notice
    assert students.logits["untrained"].shape == (359, 10)


def test_summary_rows():
    teacher = np.array([5.0, -3.0, -5.0, -7.0])
    rows = explorer.summary_rows(("dog", "cat", "car", "ship"), teacher, {"kd": teacher.copy()}, 0, 4.0,
                                 {"teacher": "teacher", "kd": "KD student"})
    assert rows[1]["KL from teacher"] == pytest.approx(0, abs=1e-12)
    assert rows[0]["guess"].startswith("dog") and json.dumps(rows)
