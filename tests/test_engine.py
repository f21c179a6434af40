"""kdviz.core.engine: the event stream, a fair experiment (same init, same batches), determinism, stop, divergence."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from kdviz.core.engine import (Diverged, DistillConfig, EpochEnd, Finished, Snapshot, Started, StepLosses,
                               TeacherConfig, check_config, distill, event_to_dict, resolve_device, run_to_end,
                               train_teacher)
from kdviz.core.data import load_dataset
from kdviz.core.models import ModelSpec

TINY_TEACHER = TeacherConfig("digits", ModelSpec("mlp", 32, 1), epochs=3, batch_size=64, augment=0)
TINY = DistillConfig(TINY_TEACHER, ModelSpec("mlp", 8, 1), temperature=4.0, alpha=0.5, epochs=2, batch_size=32,
                     learning_rate=1e-2, train_subset=96, device="cpu", probe_size=5)  # 3 steps per epoch
LOSS_KEYS = {"hard", "kd_soft", "kd_hard", "kd_total"}
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDVIZ_HOME", str(tmp_path_factory.mktemp("engine-home")))
        return list(train_teacher(TINY_TEACHER, "cpu"))


@pytest.fixture
def teacher(teacher_run) -> nn.Module:
    return teacher_run[-1].models["teacher"]


def run(config: DistillConfig, teacher: nn.Module, **changes) -> list:
    return list(distill(dataclasses.replace(config, **changes), teacher))


def of_type(events, kind) -> list:
    return [event for event in events if isinstance(event, kind)]


# ---- the teacher -----------------------------------------------------------------------------------------------

def test_teacher_stream_and_result(teacher_run):
    started, *rest, finished = teacher_run
    assert isinstance(started, Started) and started.kind == "teacher" and started.device == "cpu"
    assert started.steps_per_epoch == math.ceil(started.n_train / 64)
    assert started.total_steps == 3 * started.steps_per_epoch
    assert [type(e) for e in rest] == ([StepLosses] * started.steps_per_epoch + [EpochEnd]) * 3
    assert [e.step for e in of_type(rest, StepLosses)] == list(range(1, started.total_steps + 1))
    assert [e.epoch for e in of_type(rest, EpochEnd)] == [1, 2, 3]
    assert isinstance(finished, Finished) and finished.status == "completed"
    facts = finished.summary["teacher"]
    assert facts["accuracy"] == of_type(rest, EpochEnd)[-1].accuracy["teacher"]
    assert facts["accuracy"] > 0.6  # it learns: chance is 0.1
    assert facts["errors"] == round((1 - facts["accuracy"]) * started.n_test)
    assert facts["params"] == 64 * 32 + 32 + 32 * 10 + 10
    model = finished.models["teacher"]
    assert not model.training and next(model.parameters()).device.type == "cpu"


def test_teacher_that_diverges_says_so():
    config = dataclasses.replace(TINY_TEACHER, epochs=1, learning_rate=1e30)
    events = list(train_teacher(config, "cpu"))
    diverged = of_type(events, Diverged)
    assert len(diverged) == 1 and diverged[0].model == "teacher"
    assert f"diverged at step {diverged[0].step}" in diverged[0].message
    assert events[-1].status == "diverged"
    assert all(math.isfinite(e.losses["teacher"]) for e in of_type(events, StepLosses))


# ---- the distillation stream -----------------------------------------------------------------------------------

def test_event_order(teacher):
    events = run(TINY, teacher)
    spe = 3
    expected = [Started, EpochEnd, Snapshot] + ([StepLosses] * spe + [EpochEnd, Snapshot]) * 2 + [Finished]
    assert [type(e) for e in events] == expected
    assert [e.epoch for e in of_type(events, EpochEnd)] == [0, 1, 2]
    assert [e.epoch for e in of_type(events, Snapshot)] == [0, 1, 2]
    steps = of_type(events, StepLosses)
    assert [e.step for e in steps] == list(range(1, 2 * spe + 1))
    assert [e.epoch for e in steps] == [1] * spe + [2] * spe


def test_started_losses_snapshots_and_summary_carry_what_the_ui_needs(teacher):
    events = run(TINY, teacher)
    started, finished = events[0], events[-1]
    assert (started.kind, started.total_steps, started.steps_per_epoch) == ("distill", 6, 3)
    assert (started.device, started.n_train, started.n_test) == ("cpu", 96, 359)
    assert len(started.probe_indices) == len(set(started.probe_indices)) == 5
    assert all(0 <= i < started.n_test for i in started.probe_indices)
    for event in of_type(events, StepLosses):
        assert set(event.losses) == LOSS_KEYS and all(math.isfinite(v) for v in event.losses.values())
        losses = event.losses
        assert losses["kd_total"] == pytest.approx(0.5 * losses["kd_soft"] + 0.5 * losses["kd_hard"], rel=1e-5)
    for event in of_type(events, Snapshot):
        assert set(event.logits) == {"hard", "kd"}
        assert all(len(rows) == 5 and all(len(row) == 10 for row in rows) for rows in event.logits.values())
    epochs = of_type(events, EpochEnd)
    assert all(set(e.accuracy) == {"teacher", "hard", "kd"} for e in epochs)
    assert len({e.accuracy["teacher"] for e in epochs}) == 1  # the teacher is frozen
    assert finished.status == "completed"
    summary = finished.summary
    assert {"teacher", "hard", "kd", "n_test", "n_train", "device", "seconds", "steps"} <= set(summary)
    assert summary["steps"] == 6 and summary["n_train"] == 96 and summary["device"] == "cpu"
    assert summary["hard"]["accuracy"] == epochs[-1].accuracy["hard"]
    assert summary["kd"]["accuracy"] == epochs[-1].accuracy["kd"]
    assert summary["hard"]["params"] == summary["kd"]["params"] == 64 * 8 + 8 + 8 * 10 + 10
    assert set(finished.models) == {"hard", "kd"} and not finished.models["kd"].training
    for role, model in finished.models.items():  # fidelity to the teacher, on the test images
        data = load_dataset("digits")
        with torch.no_grad():
            same = (model(data.test_x).argmax(-1) == teacher(data.test_x).argmax(-1)).double().mean()
        assert summary[role]["agreement"] == pytest.approx(float(same))
        assert summary[role]["kl_to_teacher"] > 0


def test_the_teacher_is_not_changed_by_distillation(teacher):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in teacher.parameters()]
    run(TINY, teacher, alpha=1.0)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    for p, grad in zip(teacher.parameters(), grads):  # no gradient flowed into the teacher
        assert (p.grad is None and grad is None) or torch.equal(p.grad, grad)


def test_students_learn(teacher):
    finished = run(TINY, teacher, epochs=3, train_subset=400, alpha=0.7)[-1]
    assert finished.summary["hard"]["accuracy"] > 0.3 and finished.summary["kd"]["accuracy"] > 0.3  # chance: 0.1


# ---- a fair experiment -----------------------------------------------------------------------------------------

def _numbers(events) -> list:
    return [(type(e).__name__, getattr(e, "losses", None) or getattr(e, "accuracy", None) or e.logits)
            for e in events if isinstance(e, (StepLosses, EpochEnd, Snapshot))]


def test_same_seed_same_numbers_different_seed_different_numbers(teacher):
    first, again, other = run(TINY, teacher), run(TINY, teacher), run(TINY, teacher, seed=1)
    assert _numbers(first) == _numbers(again)
    assert first[-1].summary["hard"] == again[-1].summary["hard"]
    first_losses = [e.losses for e in of_type(first, StepLosses)]
    assert first_losses != [e.losses for e in of_type(other, StepLosses)]
    assert of_type(first, Snapshot)[0].logits != of_type(other, Snapshot)[0].logits  # another initialisation


def test_both_students_start_from_the_same_weights_and_see_the_same_first_batch(teacher):
    events = run(TINY, teacher)
    start = of_type(events, EpochEnd)[0]
    assert start.accuracy["hard"] == start.accuracy["kd"]
    snapshot = of_type(events, Snapshot)[0]
    assert snapshot.logits["hard"] == snapshot.logits["kd"]
    first = of_type(events, StepLosses)[0].losses
    assert first["hard"] == first["kd_hard"]  # same weights, same batch: the same cross-entropy before any update
    later = of_type(events, StepLosses)[-1].losses
    assert later["hard"] != later["kd_hard"]  # after that, the losses differ (alpha = 0.5)


def test_with_alpha_zero_the_kd_student_is_the_hard_label_student(teacher):
    # alpha = 0: the KD loss is the cross-entropy, so identical init + identical batches ⇒ identical students
    events = run(TINY, teacher, alpha=0.0)
    for event in of_type(events, StepLosses):
        assert event.losses["kd_total"] == event.losses["hard"] == event.losses["kd_hard"]
    for event in of_type(events, EpochEnd):
        assert event.accuracy["hard"] == event.accuracy["kd"]
    for event in of_type(events, Snapshot):
        assert event.logits["hard"] == event.logits["kd"]
    hard, kd = events[-1].models["hard"], events[-1].models["kd"]
    assert all(torch.equal(a, b) for a, b in zip(hard.state_dict().values(), kd.state_dict().values()))


def test_train_subset_is_drawn_with_the_seed(teacher):
    a, b = run(TINY, teacher, train_subset=50, epochs=1), run(TINY, teacher, train_subset=50, epochs=1, seed=3)
    assert a[0].n_train == b[0].n_train == 50 and a[-1].summary["n_train"] == 50
    assert a[0].steps_per_epoch == 2


# ---- validation beside test ------------------------------------------------------------------------------------

def test_every_epoch_reports_validation_beside_test_and_the_summary_keeps_both(teacher):
    events = run(TINY, teacher)
    started, finished = events[0], events[-1]
    assert (started.n_train, started.n_val, started.n_test) == (96, 287, 359)
    for event in of_type(events, EpochEnd):
        assert set(event.val_accuracy) == set(event.accuracy) == {"teacher", "hard", "kd"}
        assert all(0 <= v <= 1 for v in event.val_accuracy.values())
    last = of_type(events, EpochEnd)[-1]
    summary = finished.summary
    for role in ("teacher", "hard", "kd"):
        assert summary[role]["val_accuracy"] == last.val_accuracy[role]
        assert summary[role]["accuracy"] == last.accuracy[role]
        assert summary[role]["val_errors"] == round((1 - last.val_accuracy[role]) * 287)
    assert summary["n_val"] == 287 and summary["split"]["validation"] == 287 and summary["split"]["test"] == 359


def test_validation_and_test_accuracies_are_measured_on_different_images(teacher):
    """Not one number shown twice: over the epochs of a run, the two curves differ somewhere."""
    epochs = of_type(run(TINY, teacher, epochs=3), EpochEnd)
    assert any(e.val_accuracy[role] != e.accuracy[role] for e in epochs for role in ("hard", "kd"))


def test_teacher_training_reports_validation_too(teacher_run):
    epochs = of_type(teacher_run, EpochEnd)
    assert all(set(e.val_accuracy) == {"teacher"} for e in epochs)
    summary = teacher_run[-1].summary
    assert summary["teacher"]["val_accuracy"] == epochs[-1].val_accuracy["teacher"]
    assert summary["n_train"] == 1151 and summary["n_val"] == 287  # the teacher never trains on validation images


# ---- randomness: explicit generators only ----------------------------------------------------------------------

def test_runs_never_touch_the_global_rng(teacher):
    """Initial weights, batches, jitter and dropout all come from generators seeded from the config."""
    config = dataclasses.replace(TINY, augment=1, student=ModelSpec("mlp", 8, 1, dropout=0.2))
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    first = run(config, teacher)
    assert torch.equal(torch.get_rng_state(), state)  # nothing drew from (or re-seeded) the global RNG
    torch.manual_seed(99)  # another global state: the same numbers
    assert _numbers(run(config, teacher)) == _numbers(first)


def test_the_initial_weights_do_not_depend_on_batch_size_or_augmentation(teacher):
    a, b = run(TINY, teacher, batch_size=16, augment=2), run(TINY, teacher)
    assert of_type(a, Snapshot)[0].logits == of_type(b, Snapshot)[0].logits  # separate streams per purpose


def _final_weights(finished) -> dict:
    return {role: {k: v.clone() for k, v in model.state_dict().items()} for role, model in finished.models.items()}


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[r][k], b[r][k]) for r in a for k in a[r])


def test_two_runs_at_the_same_moment_in_threads_equal_the_same_runs_one_after_the_other(teacher):
    """A lecture server runs several students' runs in threads of one process: same config, same numbers, whoever
    else is running. Bit-identical events and weights, with dropout and jitter on."""
    import threading

    configs = [dataclasses.replace(TINY, augment=1, epochs=3, student=ModelSpec("mlp", 16, 2, dropout=0.3)),
               dataclasses.replace(TINY, seed=5, epochs=3, temperature=2.0)]
    alone = [run(config, teacher) for config in configs]
    together: list = [None, None]
    barrier = threading.Barrier(2)

    def work(i):
        barrier.wait()  # start at the same moment
        together[i] = list(distill(configs[i], teacher))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(result is not None for result in together), "a concurrent run did not finish"
    for solo, shared in zip(alone, together):
        assert _numbers(shared) == _numbers(solo)
        assert _same_weights(_final_weights(shared[-1]), _final_weights(solo[-1]))


# ---- tuning the baseline alone --------------------------------------------------------------------------------

def test_the_hard_label_student_alone_is_the_twin_of_the_full_run(teacher):
    """A sweep that tunes only the baseline trains the same hard-label student as the side-by-side run."""
    both, alone = run(TINY, teacher), list(distill(TINY, teacher, students=("hard",)))
    assert set(alone[-1].models) == {"hard"} and "kd" not in alone[-1].summary
    assert all(set(e.losses) == {"hard"} for e in of_type(alone, StepLosses))
    hard = [e.losses["hard"] for e in of_type(both, StepLosses)]
    assert [e.losses["hard"] for e in of_type(alone, StepLosses)] == hard
    assert alone[-1].summary["hard"] == both[-1].summary["hard"]
    assert _same_weights(_final_weights(alone[-1]), {"hard": _final_weights(both[-1])["hard"]})


def test_unknown_student_roles_are_refused(teacher):
    with pytest.raises(ValueError, match="students must be some of hard, kd"):
        next(distill(TINY, teacher, students=("ensemble",)))


def test_weight_decay_changes_the_students_and_is_recorded(teacher):
    plain, decayed = run(TINY, teacher), run(TINY, teacher, weight_decay=0.5)
    assert of_type(plain, StepLosses)[0].losses == of_type(decayed, StepLosses)[0].losses  # same start
    assert of_type(plain, StepLosses)[-1].losses != of_type(decayed, StepLosses)[-1].losses
    assert dataclasses.asdict(dataclasses.replace(TINY, weight_decay=0.5))["weight_decay"] == 0.5


def test_dropout_masks_are_the_same_for_both_students(teacher):
    """Same weights, same batch, same masks: with dropout the two students' first cross-entropies still agree."""
    events = run(TINY, teacher, student=ModelSpec("mlp", 16, 1, dropout=0.5))
    first = of_type(events, StepLosses)[0].losses
    assert first["hard"] == first["kd_hard"]


# ---- offline distillation: teacher logits cached unless inputs are augmented -----------------------------------

class CountingTeacher(nn.Module):
    """Wraps a teacher and counts its forward calls."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def _teacher_calls(teacher, **changes) -> tuple[int, int]:
    counting = CountingTeacher(teacher)
    events = run(TINY, counting, **changes)
    assert events[-1].status == "completed"
    return counting.calls, events[0].steps_per_epoch


def test_teacher_logits_are_computed_once_without_augmentation(teacher):
    one_epoch, _ = _teacher_calls(teacher, epochs=1, augment=0)
    two_epochs, _ = _teacher_calls(teacher, epochs=2, augment=0)
    assert one_epoch == two_epochs <= 3  # one pass over the training set, one over the test set


def test_a_baseline_trained_alone_never_asks_the_teacher_for_labels(teacher):
    counts = []
    for epochs in (1, 2):
        counting = CountingTeacher(teacher)
        events = list(distill(dataclasses.replace(TINY, epochs=epochs, augment=1), counting, students=("hard",)))
        assert events[-1].status == "completed"
        counts.append(counting.calls)
    assert counts[0] == counts[1] <= 2  # only its own accuracy on validation and test, once


def test_teacher_labels_every_augmented_batch(teacher):
    one_epoch, steps_per_epoch = _teacher_calls(teacher, epochs=1, augment=1)
    two_epochs, _ = _teacher_calls(teacher, epochs=2, augment=1)
    assert two_epochs - one_epoch == steps_per_epoch


def test_a_fixed_teacher_labels_the_unjittered_images_once_while_the_student_sees_jittered_ones(teacher):
    """consistent_teacher=False (Beyer et al. 2022's "fixed teacher"): with jitter the teacher is asked once, like
    without jitter, and its targets are its logits on the unjittered images: the run equals one whose teacher is
    asked every batch but answers for the unjittered image of each batch's index."""
    one_epoch, _ = _teacher_calls(teacher, epochs=1, augment=1, consistent_teacher=False)
    two_epochs, _ = _teacher_calls(teacher, epochs=2, augment=1, consistent_teacher=False)
    assert one_epoch == two_epochs <= 3
    fixed = run(TINY, teacher, augment=1, consistent_teacher=False)
    consistent = run(TINY, teacher, augment=1)
    assert _numbers(fixed) != _numbers(consistent)  # the targets differ...
    hard = lambda events: [e.losses["hard"] for e in of_type(events, StepLosses)]  # noqa: E731
    assert hard(fixed) == hard(consistent)  # ...the batches and the jitter do not
    plain = run(TINY, teacher)  # without jitter the switch changes nothing
    assert _numbers(run(TINY, teacher, consistent_teacher=False)) == _numbers(plain)


def test_a_fixed_teachers_soft_term_is_the_kd_loss_towards_the_unjittered_images_logits(teacher):
    """The first step's soft term, recomputed by hand from the teacher's logits on the unjittered training images."""
    from kdviz.core.data import stratified_subset
    from kdviz.core.engine import epoch_batches, generator, initial_student, predict_logits
    from kdviz.core.data import random_shift
    from kdviz.core.kd import distillation_loss

    config = dataclasses.replace(TINY, augment=1, consistent_teacher=False)
    first = of_type(run(config, teacher), StepLosses)[0].losses
    dataset = load_dataset(config.dataset)
    subset = stratified_subset(dataset.train_y, config.train_subset, config.seed)
    x_all, y_all = dataset.train_x[subset], dataset.train_y[subset]
    batches = generator(config.seed, "batches")
    index = epoch_batches(len(x_all), config.batch_size, batches)[0]
    x = random_shift(x_all[index], config.augment, batches, dataset.background)
    student = initial_student(config, dataset)
    targets = predict_logits(teacher, x_all)[index]
    expected = distillation_loss(student(x), targets, y_all[index], config.temperature, config.alpha)
    assert math.isclose(first["kd_soft"], float(expected["soft"]), rel_tol=1e-5)
    consistent = distillation_loss(student(x), predict_logits(teacher, x), y_all[index], config.temperature,
                                   config.alpha)
    assert not math.isclose(float(consistent["soft"]), float(expected["soft"]), rel_tol=1e-3)


def test_augmentation_changes_the_batches_but_keeps_the_run_deterministic(teacher):
    plain, jittered, again = run(TINY, teacher), run(TINY, teacher, augment=1), run(TINY, teacher, augment=1)
    assert _numbers(jittered) == _numbers(again)
    assert of_type(plain, StepLosses)[0].losses != of_type(jittered, StepLosses)[0].losses


# ---- stopping and diverging ------------------------------------------------------------------------------------

def test_should_stop_cancels_with_a_summary(teacher):
    checks = []

    def should_stop():
        checks.append(1)
        return len(checks) > 4  # four steps, then stop

    events = list(distill(TINY, teacher, should_stop))
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.status == "cancelled"
    assert finished.summary["steps"] == 4 and {"hard", "kd", "teacher"} <= set(finished.summary)
    assert [e.step for e in of_type(events, StepLosses)] == [1, 2, 3, 4]
    assert [e.epoch for e in of_type(events, EpochEnd)] == [0, 1]  # no epoch end after the cancel
    assert set(finished.models) == {"hard", "kd"}


def test_a_run_stopped_mid_epoch_reports_accuracy_agreement_and_kl_of_the_same_weights(teacher):
    """The summary of a stopped run describes the models it returns: its accuracies, agreement and KL all recomputed
    from them match (before, the accuracy was the last full epoch's, agreement and KL the mid-epoch weights')."""
    from kdviz.core.engine import accuracy, predict_logits
    from kdviz.core.kd import teacher_agreement

    checks = []
    events = list(distill(TINY, teacher, lambda: checks.append(1) or len(checks) > 4))  # 1 step into epoch 2
    finished, data = events[-1], load_dataset(TINY.dataset)
    assert finished.status == "cancelled" and finished.summary["steps"] == 4
    teacher_logits = predict_logits(teacher, data.test_x)
    for role, model in finished.models.items():
        facts = finished.summary[role]
        assert facts["accuracy"] == accuracy(model, data.test_x, data.test_y), role
        assert facts["val_accuracy"] == accuracy(model, data.val_x, data.val_y), role
        again = teacher_agreement(teacher_logits, predict_logits(model, data.test_x))
        assert (facts["agreement"], facts["kl_to_teacher"]) == (again["agreement"], again["kl_to_teacher"]), role
    last_epoch = of_type(events, EpochEnd)[-1]  # the step after it moved the weights: its numbers are not the summary's
    assert any(last_epoch.accuracy[role] != finished.summary[role]["accuracy"] for role in ("hard", "kd"))


def test_teacher_training_can_be_cancelled():
    finished = run_to_end(train_teacher(TINY_TEACHER, "cpu", should_stop=lambda: True))
    assert finished.status == "cancelled" and finished.summary["steps"] == 0


def test_a_teacher_stopped_mid_epoch_reports_the_accuracy_of_the_weights_it_returns():
    from kdviz.core.engine import accuracy

    checks = []
    events = list(train_teacher(TINY_TEACHER, "cpu", lambda: checks.append(1) or len(checks) > 20))  # 18 a epoch
    finished, data = events[-1], load_dataset(TINY_TEACHER.dataset)
    assert finished.status == "cancelled" and of_type(events, EpochEnd)
    model, facts = finished.models["teacher"], finished.summary["teacher"]
    assert facts["accuracy"] == accuracy(model, data.test_x, data.test_y)
    assert facts["val_accuracy"] == accuracy(model, data.val_x, data.val_y)


def test_closing_the_stream_stops_it(teacher):
    events = distill(TINY, teacher)
    first = [next(events) for _ in range(5)]
    events.close()  # a consumer that stops iterating: no error, nothing more
    assert isinstance(first[0], Started)
    assert list(events) == []


def test_divergence_is_an_event_not_a_crash(teacher):
    events = run(TINY, teacher, learning_rate=1e30)
    diverged = of_type(events, Diverged)
    assert len(diverged) == 1
    step = diverged[0].step
    assert f"diverged at step {step}" in diverged[0].message and "learning rate" in diverged[0].message
    assert diverged[0].model in ("hard-label student", "KD student")
    steps = of_type(events, StepLosses)
    assert all(e.step < step for e in steps)
    assert all(math.isfinite(v) for e in steps for v in e.losses.values())  # no NaN reaches a chart
    assert events[-1].status == "diverged" and events[-2] is diverged[0]
    json.dumps([event_to_dict(e) for e in events], allow_nan=False)  # the summary is plain JSON too


# ---- devices ---------------------------------------------------------------------------------------------------

def test_auto_and_cpu_devices_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")


@no_cuda
def test_cuda_without_cuda_is_a_value_error(teacher):
    with pytest.raises(ValueError, match="'cuda' is not available"):
        check_config(dataclasses.replace(TINY, device="cuda"))
    with pytest.raises(ValueError, match="cuda"):
        next(train_teacher(TINY_TEACHER, "cuda"))


def test_unknown_device_is_a_value_error():
    with pytest.raises(ValueError, match="'tpu'"):
        resolve_device("tpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiny_distillation_on_cuda(teacher):
    events = run(TINY, teacher, device="cuda", augment=1)
    assert events[0].device.startswith("cuda") and events[-1].status == "completed"
    assert events[-1].summary["device"].startswith("cuda")
    assert next(teacher.parameters()).device.type == "cpu"  # a shared CPU teacher is copied, never moved
    assert all(next(m.parameters()).device.type == "cpu" for m in events[-1].models.values())
    gpu_teacher = run_to_end(train_teacher(dataclasses.replace(TINY_TEACHER, epochs=1), "cuda"))
    assert gpu_teacher.status == "completed" and gpu_teacher.summary["teacher"]["accuracy"] > 0.3


# ---- validation ------------------------------------------------------------------------------------------------

def test_weight_decay_above_one_is_accepted_while_lr_times_wd_stays_below_one():
    """AdamW shrinks each weight by lr × wd a step: that product is the bound, not wd itself (tuned baselines use
    more than 1 at small learning rates)."""
    assert check_config(dataclasses.replace(TINY, learning_rate=1e-3, weight_decay=10.0)).weight_decay == 10.0
    with pytest.raises(ValueError, match="got 0.01 × 100.0"):
        check_config(dataclasses.replace(TINY, learning_rate=1e-2, weight_decay=100.0))


@pytest.mark.parametrize("changes, fragment", [
    ({"temperature": 0}, "temperature"),
    ({"temperature": -2.0}, "-2.0"),
    ({"alpha": 1.5}, "1.5"),
    ({"alpha": -0.1}, "-0.1"),
    ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ({"batch_size": 0}, "batch size"),
    ({"learning_rate": float("nan")}, "learning rate"),
    ({"augment": 9}, "got 9"),
    ({"weight_decay": -0.1}, "weight decay must be a number >= 0, got -0.1"),
    ({"weight_decay": 1000.0}, "learning rate × weight decay must be < 1"),  # AdamW would zero every weight
    ({"train_subset": -1}, "got -1"),
    ({"probe_size": 1000}, "got 1000"),
    ({"student": ModelSpec("transformer")}, "'transformer'"),
    ({"teacher": dataclasses.replace(TINY_TEACHER, dataset="imagenet")}, "'imagenet'"),
    ({"teacher": dataclasses.replace(TINY_TEACHER, epochs=0)}, "got 0"),
    ({"device": "tpu"}, "'tpu'"),
])
def test_bad_configs_are_value_errors_naming_the_value(teacher, changes, fragment):
    config = dataclasses.replace(TINY, **changes)
    with pytest.raises(ValueError) as error:
        check_config(config)
    assert fragment in str(error.value)
    with pytest.raises(ValueError):
        next(distill(config, teacher))  # the stream validates before it yields anything


def test_train_subset_larger_than_the_data_is_a_value_error(teacher):
    with pytest.raises(ValueError, match="got 5000"):
        next(distill(dataclasses.replace(TINY, train_subset=5000), teacher))


# ---- serialisation ---------------------------------------------------------------------------------------------

def test_every_event_serialises_to_json(teacher, teacher_run):
    events = run(TINY, teacher) + teacher_run
    payloads = [json.loads(json.dumps(event_to_dict(e), allow_nan=False)) for e in events]
    assert [p["event"] for p in payloads] == [type(e).__name__ for e in events]
    started = payloads[0]
    assert started["probe_indices"] == list(events[0].probe_indices) and started["total_steps"] == 6
    finished = payloads[len(events) - len(teacher_run) - 1]
    assert finished["event"] == "Finished" and "models" not in finished
    assert finished["summary"]["kd"]["accuracy"] == events[len(events) - len(teacher_run) - 1].summary["kd"]["accuracy"]


def test_configs_are_plain_data():
    recorded = json.loads(json.dumps(dataclasses.asdict(TINY)))
    assert recorded["teacher"]["model"] == {"arch": "mlp", "width": 32, "depth": 1, "dropout": 0.0}
    assert recorded["temperature"] == 4.0 and recorded["alpha"] == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.temperature = 2.0  # type: ignore[misc]


# ---- the GPU path's batching leaves the CPU path as it was -----------------------------------------------------

def _fingerprint(events) -> str:
    """A hash of every number a run reports (losses, accuracies, probe logits, divergence, summary facts) and of the
    trained weights, as exact bits: two streams with the same fingerprint are the same run."""
    import hashlib

    digest = hashlib.sha256()

    def add(value) -> None:
        digest.update(json.dumps(value, sort_keys=True, default=lambda v: float(v).hex()).encode())

    for event in events:
        add(type(event).__name__)
        if isinstance(event, StepLosses):
            add([event.step, event.epoch, {k: v.hex() for k, v in event.losses.items()}])
        elif isinstance(event, EpochEnd):
            add([event.epoch, {k: v.hex() for k, v in event.accuracy.items()},
                 {k: v.hex() for k, v in event.val_accuracy.items()}])
        elif isinstance(event, Snapshot):
            add({role: [[v.hex() for v in row] for row in rows] for role, rows in event.logits.items()})
        elif isinstance(event, Diverged):
            add([event.step, event.model, event.message])
        elif isinstance(event, Finished):
            facts = ("accuracy", "val_accuracy", "agreement", "kl_to_teacher", "params")
            add([event.status, event.summary["steps"],
                 {role: {k: event.summary[role].get(k) for k in facts} for role in ("teacher", "hard", "kd")
                  if role in event.summary}])
            for role, model in sorted(event.models.items()):
                for name, tensor in model.state_dict().items():
                    digest.update(name.encode())
                    digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _pinned_runs(teacher, **options):
    """The runs the CPU path is pinned by: plain, jitter + dropout + weight decay, a CNN (batch norm) with jitter, the
    baseline alone, a diverging run and a cancelled one; the teacher with dropout and jitter, and diverging."""
    extra = {}
    if options:
        from kdviz.core.engine import DeviceOptions

        extra = {"options": DeviceOptions(**options)}
    checks = []
    return {
        "teacher": list(train_teacher(dataclasses.replace(TINY_TEACHER, epochs=1, augment=1,
                                                          model=ModelSpec("mlp", 32, 1, dropout=0.2)), "cpu", **extra)),
        "teacher-diverged": list(train_teacher(dataclasses.replace(TINY_TEACHER, epochs=1, learning_rate=1e30), "cpu",
                                               **extra)),
        "tiny": list(distill(TINY, teacher, **extra)),
        "jitter-dropout-decay": list(distill(dataclasses.replace(TINY, augment=1, weight_decay=0.1, student=ModelSpec(
            "mlp", 8, 1, dropout=0.2)), teacher, **extra)),
        "cnn-jitter": list(distill(dataclasses.replace(TINY, augment=1, student=ModelSpec("cnn", 4, 1)), teacher,
                                   **extra)),
        "hard-only": list(distill(TINY, teacher, students=("hard",), **extra)),
        "diverged": list(distill(dataclasses.replace(TINY, learning_rate=1e30), teacher, **extra)),
        "cancelled": list(distill(TINY, teacher, lambda: checks.append(1) or len(checks) > 4, **extra)),
    }


# Fingerprints per machine kind: floating-point results depend on the kernels a CPU gets (its instruction set), so
# each (torch, CPU capability, threads) has its own. The six runs that finish were recorded with the engine as it was
# before the GPU path (commit f36485a; on AVX2 the same commit was checked out and run beside today's engine: equal).
# "cancelled" and "diverged" changed on purpose in issue 19 (a stopped run's summary is measured on its final
# weights): on AVX2 they are today's engine's, on AVX512 not yet re-recorded (None: not compared; no AVX512 machine
# was at hand). A machine kind not listed skips the test and says which kinds are; the sync-interval test below
# holds everywhere.
ENGINE_FINGERPRINTS = {
    ("2.14.1+cu130", "AVX512", 1): {
        "teacher": "ac24814d3febfa7c", "teacher-diverged": "8f40850b1ee5f9b0", "tiny": "ace948fb19c53779",
        "jitter-dropout-decay": "a94ba0c851140f62", "cnn-jitter": "04bbbfea33a16228", "hard-only": "9353ccdcb232b688",
        "diverged": None, "cancelled": None},
    ("2.14.1+cu130", "AVX2", 1): {
        "teacher": "b322505336b9fca2", "teacher-diverged": "a4d6703c61fc96bd", "tiny": "2cb448dd1aaceb4f",
        "jitter-dropout-decay": "59c6b48ad78d5bc9", "cnn-jitter": "2cf0df1197b4cabc", "hard-only": "52b9f7f54d884e94",
        "diverged": "2f8396bcb3537fc0", "cancelled": "57665f2cb8aba84d"},
}


def test_cpu_numbers_are_bit_identical_to_the_engine_before_the_gpu_path(teacher):
    from kdviz.core.engine import thread_count

    environment = (torch.__version__, torch.backends.cpu.get_cpu_capability(), thread_count())
    if environment not in ENGINE_FINGERPRINTS:
        pytest.skip(f"fingerprints recorded on {sorted(ENGINE_FINGERPRINTS)}, this is {environment}")
    expected = {name: value for name, value in ENGINE_FINGERPRINTS[environment].items() if value is not None}
    runs = _pinned_runs(teacher)
    assert {name: _fingerprint(runs[name]) for name in expected} == expected


def test_reading_the_losses_every_k_steps_changes_no_number(teacher):
    """The GPU path reads the losses every k steps instead of every step; on CPU k = 7 gives the same runs, number for
    number (the weights of a diverged run aside: steps after the diverged one were taken before it was read)."""
    every_step, every_7 = _pinned_runs(teacher), _pinned_runs(teacher, sync_every=7)
    for name in every_step:
        if "diverged" in name:
            continue
        assert _fingerprint(every_7[name]) == _fingerprint(every_step[name]), name
    for name in ("diverged", "teacher-diverged"):  # the same step is named, only the steps before it are reported
        a, b = every_step[name], every_7[name]
        assert [(type(e), getattr(e, "step", None)) for e in a[:-1]] == [(type(e), getattr(e, "step", None))
                                                                        for e in b[:-1]]
        assert of_type(a, Diverged)[0] == of_type(b, Diverged)[0]
        assert a[-1].status == b[-1].status == "diverged" and a[-1].summary["steps"] == b[-1].summary["steps"]


def test_a_cancel_reports_the_steps_still_waiting_to_be_read(teacher):
    from kdviz.core.engine import DeviceOptions

    checks = []
    events = list(distill(dataclasses.replace(TINY, epochs=3), teacher, lambda: checks.append(1) or len(checks) > 5,
                          options=DeviceOptions(sync_every=4)))
    assert [e.step for e in of_type(events, StepLosses)] == [1, 2, 3, 4, 5]  # 4 read by count, 5 at the cancel
    assert events[-1].status == "cancelled" and events[-1].summary["steps"] == 5
    assert [e.epoch for e in of_type(events, EpochEnd)] == [0, 1]


def test_gpu_options_never_change_a_cpu_run(teacher):
    """bf16, channels_last and torch.compile are for CUDA only: asked for on CPU, the run is the plain CPU run."""
    from kdviz.core.engine import DeviceOptions

    config = dataclasses.replace(TINY, augment=1, student=ModelSpec("cnn", 4, 1))
    plain = list(distill(config, teacher))
    asked = list(distill(config, teacher, options=DeviceOptions(precision="bf16", channels_last=True, compile=True)))
    assert _fingerprint(asked) == _fingerprint(plain)
    assert asked[-1].summary["precision"] == "fp32" and asked[-1].summary["world_size"] == 1


@pytest.mark.parametrize("options, fragment", [({"precision": "fp16"}, "'fp16'"), ({"sync_every": 0}, "got 0")])
def test_bad_device_options_are_value_errors(teacher, options, fragment):
    from kdviz.core.engine import DeviceOptions

    with pytest.raises(ValueError, match=fragment):
        next(distill(TINY, teacher, options=DeviceOptions(**options)))
