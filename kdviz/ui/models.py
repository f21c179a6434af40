"""What every page shares, loaded once per process: datasets, cached teachers with their test logits, the students of
the latest run of a teacher, and the one view of a teacher being trained in the background."""
from __future__ import annotations

import streamlit as st

from kdviz.ui import core
from kdviz.ui.core import default_teacher_task


@st.cache_resource(show_spinner=False)
def dataset(name: str):
    from kdviz.core.data import load_dataset

    return load_dataset(name)


@st.cache_resource(show_spinner=False)
def test_pixels(name: str):
    """(N, H, W, C) uint8: every test image of the dataset as pixels, for thumbnails."""
    data = dataset(name)
    return data.to_pixels(data.test_x)


@st.cache_resource(show_spinner="Computing the teacher's logits on the test images…", max_entries=8)
def _teacher(file_key: str, _config):
    """(teacher model, (N, C) test logits), once per teacher file (file_key: its path and modification time)."""
    from kdviz.core.teachers import load_cached
    from kdviz.views import explorer

    model, _ = load_cached(_config)
    return model, explorer.test_logits(model, dataset(_config.dataset))


def teacher(config):
    """(teacher, (N, C) test logits) of a cached teacher, or None while its file is missing or unusable (the task
    that prepares it says why and trains it again: teacher_progress)."""
    from kdviz.core.teachers import CacheError, is_cached, teacher_path

    if config is None or not is_cached(config):
        return None
    path = teacher_path(config)
    try:
        return _teacher(f"{path}:{path.stat().st_mtime_ns}", config)
    except (CacheError, OSError):
        return None


def teacher_task(config):
    """The background task preparing this teacher: the home page's for the default teacher, else its own."""
    from kdviz.core import presets
    from kdviz.core.teachers import prepare_teacher, teacher_key, teacher_path
    from kdviz.runs import tasks

    if config == presets.DEFAULT_TEACHER:
        return default_teacher_task()
    return tasks.task_for(f"teacher-{teacher_key(config)}",
                          lambda should_stop: prepare_teacher(config, "auto", should_stop),
                          retry_after=core.TEACHER_RETRY_S, makes=lambda: teacher_path(config))


def teacher_name(config) -> str:
    """E.g. "MLP 784-1200-1200-10 on mnist5k"."""
    data = dataset(config.dataset)
    return f"{config.model.describe(data.input_shape, data.num_classes)} on {config.dataset}"


def accuracies(test: float | None, validation: float | None) -> str:
    """"97.1% validation, 96.8% test accuracy" (validation left out for records that predate it)."""
    if validation is None:
        return f"{test:.1%} test accuracy"
    return f"{validation:.1%} validation, {test:.1%} test accuracy"


@st.fragment(run_every=1.0)
def teacher_progress(config, waiting: bool = True) -> None:
    """A teacher being prepared in the background, as every page shows it: the task's notices, a progress bar with the
    last epoch's validation and test accuracy, and how it ended.

    waiting: the page needs this teacher; once it is cached the whole page reruns and shows it. Otherwise (the home
    page) the finished teacher is reported with its accuracies and size.
    """
    from kdviz.core import presets

    task = teacher_task(config)
    which = "The default teacher" if config == presets.DEFAULT_TEACHER else f"The {config.dataset} teacher"
    for notice in task.notices:
        st.warning(notice, icon=":material/build:")
    if task.state == "waiting":
        workers = core.run_manager().settings.workers
        st.info(f"{which} ({teacher_name(config)}) waits for a free worker: this server trains "
                f"{'one run' if workers == 1 else f'{workers} runs'} at a time, a teacher in the background included, "
                "and they are busy. It starts as soon as one finishes or pauses.", icon=":material/hourglass_top:")
    elif task.state in ("pending", "running"):
        epoch = task.last_epoch
        detail = "" if epoch is None else \
            f", epoch {epoch.epoch}: {accuracies(epoch.accuracy['teacher'], epoch.val_accuracy.get('teacher'))}"
        if waiting:
            st.info(f"{which} ({teacher_name(config)}) is being trained once, in the background; it is then cached "
                    "and this page fills in by itself.", icon=":material/hourglass_top:")
        st.progress(task.progress(), text=f"Training {which[0].lower()}{which[1:]} once (then it is cached){detail}…")
    elif task.state == "completed" and waiting:
        if teacher(config) is not None:
            st.rerun(scope="app")  # the whole page, now with its teacher
        st.error(f"{which} was trained but its cache file cannot be read; restart the server to train it again "
                 "(a file that is gone, e.g. removed by the disk quota, is trained again by itself).",
                 icon=":material/error:")
    elif task.state == "completed":
        facts = task.finished.summary["teacher"]
        measured = accuracies(facts["accuracy"], facts.get("val_accuracy"))
        st.success(f"{which} is ready: {teacher_name(config)}, {measured}, {facts['params']:,} parameters "
                   f"({facts['size_bytes'] / 1e6:.1f} MB).", icon=":material/check:")
    else:
        retry = task.retry_in(core.TEACHER_RETRY_S) or 0.0
        st.error(f"{which} could not be prepared ({task.error or task.state}). kdviz tries again by itself in "
                 f"{retry:.0f} s; `python -m kdviz prepare` in a terminal shows why.", icon=":material/error:")


@st.cache_resource(show_spinner="Loading the students and their logits on the test images…", max_entries=8)
def _students(name: str, run_id: str | None, runs_root: str):
    from kdviz.runs.store import RunStore
    from kdviz.views import explorer

    return explorer.load_students(dataset(name), run_id, RunStore(runs_root))


def students(name: str):
    """The students shown beside the dataset's teacher (explorer.teacher_for): the untrained student and, from the
    latest completed run of that very teacher, its hard-label and KD students (kdviz.views.explorer.Students)."""
    from kdviz.runs.store import RunStore
    from kdviz.views import explorer

    store = RunStore()
    return _students(name, store.latest_completed(explorer.teacher_for(name)), str(store.root))
