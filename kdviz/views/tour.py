"""The guided tour without Streamlit: the lecture's fourteen steps, the link that opens each one, and its questions.

A step is one idea of the lecture in two to four sentences and one live view (kdviz.ui.tour draws it). The state a
link carries is the step, T and α (`?step=5&T=4&alpha=0.9`), plus the room code of a presentation a follower joins
(`?room=K7MQ2`). Plain Python and numpy (no torch): the first steps must open instantly.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping

from kdviz.views.query import (DEFAULT_ALPHA, DEFAULT_TEMPERATURE, format_number, parse_alpha,
                               parse_temperature, to_float)

QUERY_KEYS = ("step", "T", "alpha", "room")  # every URL parameter the tour writes (and so may remove)


@dataclass(frozen=True)
class Step:
    """One idea of the lecture: its title, its words, what it shows (`view`, drawn by kdviz.ui.tour), the experiment
    whose run on this server backs it (if any), its predict-then-reveal question (if any), and whether T and α
    change what it shows."""

    number: int
    slug: str
    title: str
    text: str
    view: str
    experiment: str | None = None
    question: str | None = None
    uses_temperature: bool = False


STEPS: tuple[Step, ...] = (
    Step(1, "teacher-and-student", "A large teacher teaches a small student",
         "A large network, trained for a long time on lots of data, is accurate but slow and expensive to run. "
         "**Knowledge distillation** (Hinton, Vinyals & Dean 2015) trains a much smaller network, the **student**, "
         "to imitate it. The student learns not only *which* answer the teacher gives but *how sure* it is of "
         "every other answer.", "classroom"),
    Step(2, "hard-labels", "Hard labels: one class, all or nothing",
         "A dataset labels each image with one class: this picture is a *dog*, class 0 of dog, cat, car, ship. As a "
         "distribution over the classes that is **one-hot**: 1 for dog, 0 for everything else. A dog that looks a "
         "bit like a cat gets the same label as one that could never be mistaken for anything.", "hard-labels"),
    Step(3, "teacher-logits", "The teacher's logits, and its softmax: \"dog\"",
         "A network's last layer gives one number per class, a **logit**: the trained teacher gives this image "
         "[5, −3, −5, −7]. The **softmax** turns logits into probabilities, exp(z) / Σ exp(z): the teacher says "
         "*dog* with {p_dog_1}. Its ranking of the rest (cat before car before ship) is there too, but almost "
         "invisible.", "teacher", uses_temperature=False),
    Step(4, "student-logits", "The untrained student's logits: what does it say?",
         "An untrained student starts from random weights. On the same dog it gives the logits [−1, 3, 2, −3]. "
         "Which class does its softmax pick? Guess first: then its distribution shows how far training has to move "
         "it towards the teacher's.", "student", question="student-pick"),
    Step(5, "temperature", "Soft labels at a temperature T",
         "Dividing the logits by a **temperature** T before the softmax softens the distribution: at T = 1 the "
         "teacher gives cat only {p_cat_1}, but the gaps between the logits shrink as T grows. These **soft "
         "labels** show how alike the teacher thinks the classes are: that is what the student learns from. Guess "
         "what cat gets at T = 10, then drag T and watch.", "temperature", question="teacher-cat",
         uses_temperature=True),
    Step(6, "loss", "The loss that aligns the two distributions",
         "The student is trained on α·T²·KL(teacher ‖ student) at T, plus (1 − α) times the ordinary cross-entropy "
         "with the hard label. The KL term is 0 only when the student's soft labels equal the teacher's. Its "
         "gradient moves each student logit by T(p − q): up where the teacher gives more probability than the "
         "student, down where it gives less; the T² keeps that push the same size whatever T.", "loss",
         uses_temperature=True),
    Step(7, "live-run", "Over and over, with lots of images",
         "One image is not enough: distillation repeats this step over thousands of images. Here two students with "
         "the same start and the same batches train side by side, one on hard labels and one on the teacher's "
         "soft labels, on this server, now.", "live-run", question="kd-wins"),
    Step(8, "case-study", "The case study: ResNet-152 → ResNet-50",
         "In the lecture's case study a ResNet-50 student trained with hard labels reaches {hard_top1} top-1 "
         "on ImageNet; distilled from a ResNet-152 teacher (≈{teacher_top1}) it reaches {kd_top1}, at less than "
         "half the size (numbers as quoted in the lecture). Beside them: the run this server did at step 7.",
         "case-study"),
    Step(9, "over-parameterised", "Why it works, 1: teachers are over-parameterised",
         "A large network has far more weights than the task needs; much of what it learnt fits into a network a "
         "fraction of its size. Below: students of several sizes and with several amounts of data, each trained "
         "with hard labels and with distillation, on this server.", "capacity", experiment="capacity"),
    Step(10, "dark-knowledge", "Why it works, 2: dark knowledge",
         "Soft labels carry how alike the classes are, which hard labels never say: the teacher's mean soft label "
         "per class shows which digits it confuses. Hinton et al. even left a digit out of the student's training "
         "altogether: the student learnt it from the soft labels of the other digits alone.", "dark-knowledge",
         experiment="missing-class", question="missing-digit", uses_temperature=True),
    Step(11, "steadier-gradients", "Why it works, 3: steadier gradients",
         "A soft label says more per image than a hard one, so the gradients of the soft loss vary less from one "
         "mini-batch to the next, and a student can train on fewer images with a larger learning rate. Measured "
         "here: how far a mini-batch's gradient strays from the full-batch one, soft against hard.",
         "gradient-variance", experiment="gradient-variance"),
    Step(12, "ensembles", "Many teachers into one student",
         "An ensemble of teachers is more accurate than any one of them but costs all of them at every prediction. "
         "Distilling the ensemble's averaged soft labels into one student keeps part of that gain at the cost of a "
         "single small network.", "ensemble", experiment="ensemble"),
    Step(13, "energy", "What a smaller student saves",
         "A student with fewer parameters needs fewer operations per prediction: less time, less memory and less "
         "energy, every time it answers. Measured here for this server's teacher and students, beside the lecture's "
         "ResNets.", "compression", experiment="compression"),
    Step(14, "conclusion", "Conclusion",
         "Distillation trains a small student on the soft labels of a large teacher: softmax at a temperature T "
         "reveals which wrong answers are nearly right, and T²·KL makes the student match them. On this server: "
         "what held, and what did not.", "conclusion"),
)
STEP_COUNT = len(STEPS)


def step(number: int) -> Step:
    return STEPS[number - 1]


def step_text(number: int) -> str:
    """The step's words with the lecture example's numbers computed here (kdviz.core.kd), never typed in."""
    from kdviz.core import kd
    from kdviz.views.run_view import LECTURE_CASE
    from kdviz.views.soft_labels import LECTURE

    teacher_at = lambda t: kd.softmax(LECTURE.teacher, t)  # noqa: E731
    percent = lambda p: f"{100 * p:.2f} %" if p >= 0.001 else f"{100 * p:.2g} %"  # noqa: E731
    return step(number).text.format(
        p_dog_1=percent(teacher_at(1.0)[0]), p_cat_1=percent(teacher_at(1.0)[1]), p_cat_10=percent(teacher_at(10.0)[1]),
        hard_top1=percent(LECTURE_CASE["hard_accuracy"]), kd_top1=percent(LECTURE_CASE["kd_accuracy"]),
        teacher_top1=f"{100 * LECTURE_CASE['teacher_accuracy']:.0f} %")


# ---- the state a link carries ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TourState:
    """What `?step=…&T=…&alpha=…&room=…` restores: the step, the temperature and α it shows, and a room to follow."""

    step: int = 1
    temperature: float = DEFAULT_TEMPERATURE
    alpha: float = DEFAULT_ALPHA
    room: str | None = None


def parse_step(text: str, notices: list[str]) -> int:
    """A step number from a link: 1 to STEP_COUNT; anything else gives the first step, with a notice."""
    value = to_float(text)
    if math.isfinite(value) and value == int(value) and 1 <= value <= STEP_COUNT:
        return int(value)
    notices.append(f"There is no step {str(text)[:20]!r} in this tour (steps 1 to {STEP_COUNT}); showing step 1.")
    return 1


def parse_query(params: Mapping[str, str]) -> tuple[TourState, list[str]]:
    """URL query parameters → the tour's state, and a notice for each value that was changed or ignored."""
    notices: list[str] = []
    state = TourState()
    if "step" in params:
        state = dataclasses.replace(state, step=parse_step(params["step"], notices))
    if "T" in params:
        state = dataclasses.replace(state, temperature=parse_temperature(params["T"], notices))
    if "alpha" in params:
        state = dataclasses.replace(state, alpha=parse_alpha(params["alpha"], notices))
    if params.get("room"):
        state = dataclasses.replace(state, room=str(params["room"]).strip().upper()[:16])
    return state, notices


def to_query(state: TourState) -> dict[str, str]:
    """The state as URL parameters (the inverse of parse_query): T and α only on steps they change."""
    query = {"step": str(state.step)}
    if step(state.step).uses_temperature:
        query |= {"T": format_number(state.temperature), "alpha": format_number(state.alpha)}
    if state.room:
        query["room"] = state.room
    return query


def link(base_url: str, state: TourState) -> str:
    """The absolute link that opens exactly this view (the lecture page's URL plus to_query)."""
    from urllib.parse import urlencode

    return f"{base_url}?{urlencode(to_query(state))}"


# ---- predict, then reveal ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Question:
    """A guess the viewer commits before the answer shows: a number on a slider (low to high) or one of options."""

    id: str
    step: int
    prompt: str
    kind: str  # "number" | "choice"
    options: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 1.0
    resolution: float = 0.01
    percent: bool = False  # a number shown as a percentage (0.25 → 25 %)


QUESTIONS: dict[str, Question] = {q.id: q for q in (
    Question("student-pick", 4, "Which class does the untrained student pick for this image?", "choice",
             options=("dog", "cat", "car", "ship")),
    Question("teacher-cat", 5, "At T = 10, what probability does the teacher give *cat*?", "number"),
    Question("kd-wins", 7, "Will the KD student beat the hard-label student on the test images in this run?",
             "choice", options=("yes", "no")),
    Question("missing-digit", 10, "A student never saw a single image of one digit. Trained on the teacher's soft "
             "labels of the other digits, what share of that digit's test images does it get right?", "number",
             percent=True),
)}


@dataclass(frozen=True)
class Answer:
    """The true answer (a number or an option) and where it comes from, in words."""

    value: float | str
    source: str


def format_guess(question: Question, value, exact: bool = False) -> str:
    """A guess (or, exact, a true answer: two more digits) as the page shows it."""
    if question.kind == "choice":
        return str(value)
    if question.percent:
        return f"{100 * float(value):.{1 if exact else 0}f} %"
    return f"{float(value):.{4 if exact else 2}f}"


def answer(question: Question, run=None) -> Answer | None:
    """The question's answer: computed with kdviz.core.kd for the lecture example, or read from `run` (a finished
    run of the step's experiment on this server); None while that run has not finished."""
    from kdviz.core import kd
    from kdviz.views.soft_labels import LECTURE

    if question.id == "student-pick":
        picked = LECTURE.classes[int(kd.softmax(LECTURE.student).argmax())]
        verdict = "right" if picked == LECTURE.classes[LECTURE.label] else "wrong"
        return Answer(picked, f"the largest of the student's softmax at T = 1, and {verdict}: the image is a "
                              f"{LECTURE.classes[LECTURE.label]}")
    if question.id == "teacher-cat":
        return Answer(float(kd.softmax(LECTURE.teacher, 10.0)[1]), "softmax([5, −3, −5, −7] / 10), the cat entry")
    if run is None or not run.summary or run.state != "completed":
        return None
    if question.id == "kd-wins":
        from kdviz.views.run_view import verdict

        won, sentence = verdict(run.summary)
        return Answer("yes" if won else "no", f"run {run.id}: {sentence}")
    if question.id == "missing-digit":
        kd_student = run.summary.get("kd")
        if not kd_student:
            return None
        return Answer(float(kd_student["omitted_accuracy_after"]),
                      f"run {run.id}: the KD student's share of the test {run.summary['omitted']}s after its output "
                      f"bias was raised by {kd_student['bias_shift']:+.2f} (chosen on validation)")
    raise ValueError(f"unknown question {question.id!r}")


def how_far(question: Question, guess, truth: Answer) -> str:
    """How far off a guess was, in one short phrase."""
    if question.kind == "choice":
        return "right" if guess == truth.value else f"wrong: it is {truth.value}"
    gap = float(guess) - float(truth.value)
    if abs(gap) < question.resolution / 2:
        return "spot on"
    size = f"{100 * abs(gap):.0f} points" if question.percent else f"{abs(gap):.2f}"
    return f"{size} too {'high' if gap > 0 else 'low'}"


def check_guess(question: Question, value) -> float | str:
    """A guess as the question takes it (a number on its range, snapped to its resolution, or one of its options);
    ValueError naming the bad value otherwise."""
    if question.kind == "choice":
        if value not in question.options:
            raise ValueError(f"choose one of {', '.join(question.options)}, got {value!r}")
        return value
    number = to_float(value)
    if not (math.isfinite(number) and question.low <= number <= question.high):
        raise ValueError(f"a guess must be a number from {question.low:g} to {question.high:g}, got {value!r}")
    return round(round(number / question.resolution) * question.resolution, 6)


HISTOGRAM_BINS = 10


def histogram(question: Question, guesses) -> tuple[list[str], list[int]]:
    """The hall's guesses counted per option, or in HISTOGRAM_BINS equal bins from low to high (labels, counts)."""
    if question.kind == "choice":
        return list(question.options), [sum(g == option for g in guesses) for option in question.options]
    width = (question.high - question.low) / HISTOGRAM_BINS
    counts = [0] * HISTOGRAM_BINS
    for guess in guesses:
        number = to_float(guess)
        if math.isfinite(number):
            counts[min(max(int((number - question.low) / width), 0), HISTOGRAM_BINS - 1)] += 1
    edges = [question.low + i * width for i in range(HISTOGRAM_BINS + 1)]
    label = (lambda x: f"{100 * x:.0f}") if question.percent else (lambda x: f"{x:.1f}")
    return [f"{label(a)}–{label(b)}" for a, b in zip(edges, edges[1:])], counts


def histogram_bin(question: Question, value) -> int:
    """The index of the histogram bar that holds value (an option, or a number's bin)."""
    if question.kind == "choice":
        return question.options.index(value)
    width = (question.high - question.low) / HISTOGRAM_BINS
    return min(max(int((float(value) - question.low) / width), 0), HISTOGRAM_BINS - 1)


# ---- figures -------------------------------------------------------------------------------------------------------

def histogram_chart(question: Question, labels: list[str], counts: list[int], marked: int | None,
                    lecture: bool = False):
    """The hall's guesses as bars; once revealed, the bar holding the true answer is marked in the KD colour."""
    from kdviz.views.charts import COLORS, MARK_COLORS, fast_figure, title_block, top_margin

    colors = [COLORS["kd"] if index == marked else COLORS["label"] for index in range(len(counts))]
    shapes = [] if marked is None else [  # the answer's bin stands out even when nobody guessed it
        {"type": "rect", "xref": "x", "yref": "paper", "x0": marked - 0.5, "x1": marked + 0.5, "y0": 0, "y1": 1,
         "fillcolor": "rgba(0, 158, 115, 0.15)", "line": {"width": 0}, "layer": "below"}]
    data = [{"type": "bar", "x": labels, "y": counts, "marker": {"color": colors}, "showlegend": False,
             "text": [str(c) if c else "" for c in counts], "textposition": "outside", "cliponaxis": False,
             "hovertemplate": "%{x}: %{y} guesses<extra></extra>"}]
    annotations = []
    if marked is not None:
        annotations.append({"x": labels[marked], "y": max(counts + [1]), "yanchor": "bottom", "yshift": 28,
                            "text": "the answer", "showarrow": False,
                            "font": {"color": MARK_COLORS["current"], "size": 20 if lecture else 15}})
    unit = " (%)" if question.percent else ""
    layout = {"title": title_block("The hall's guesses", lecture), "shapes": shapes,
              "margin": top_margin(lecture), "annotations": annotations, "bargap": 0.15,
              "xaxis": {"title": {"text": "guess" + unit}, "type": "category"},
              "yaxis": {"title": {"text": "followers"}, "rangemode": "tozero", "range": [0, max(counts + [1]) * 1.3],
                        "dtick": max(1, max(counts + [1]) // 5)}}
    return fast_figure(data, layout, lecture, 440 if lecture else 340)


def classroom_figure(teacher_sizes: list[int], student_sizes: list[int], teacher_label: str, student_label: str,
                     lecture: bool = False):
    """The classroom picture: the teacher's and the student's layers side by side, each circle a group of units
    (the number of circles grows with the layer's width, so the teacher looks as much bigger as it is)."""
    from kdviz.views.charts import COLORS, fast_figure, title_block

    widest = max(teacher_sizes + student_sizes)
    data, annotations = [], []
    for offset, sizes, role, label in ((0.0, teacher_sizes, "teacher", teacher_label),
                                       (6.0, student_sizes, "kd", student_label)):
        columns = []
        for layer, units in enumerate(sizes):
            circles = max(2, round(12 * math.sqrt(units / widest)))
            columns.append([(offset + layer * 1.2, (i - (circles - 1) / 2) * 0.5) for i in range(circles)])
        xs, ys = [], []
        for left, right in zip(columns, columns[1:]):  # every group connected to every group of the next layer
            for a in left:
                for b in right:
                    xs += [a[0], b[0], None]
                    ys += [a[1], b[1], None]
        data.append({"type": "scatter", "mode": "lines", "x": xs, "y": ys, "hoverinfo": "skip", "showlegend": False,
                     "line": {"color": COLORS[role], "width": 0.6}, "opacity": 0.35})
        points = [point for column in columns for point in column]
        data.append({"type": "scatter", "mode": "markers", "x": [p[0] for p in points], "y": [p[1] for p in points],
                     "hoverinfo": "skip", "showlegend": False,
                     "marker": {"size": 16 if lecture else 12, "color": COLORS[role],
                                "line": {"color": "white", "width": 1.5}}})
        annotations.append({"x": offset + (len(sizes) - 1) * 0.6, "y": -3.9, "text": label, "showarrow": False,
                            "font": {"size": 22 if lecture else 16, "color": COLORS[role]}})
    annotations.append({"x": 6.0 - 0.3, "y": 0.0, "ax": (len(teacher_sizes) - 1) * 1.2 + 0.5, "ay": 0.0,
                        "xref": "x", "yref": "y", "axref": "x", "ayref": "y", "text": "soft labels",
                        "showarrow": True, "arrowhead": 3, "arrowwidth": 3, "arrowcolor": "#6B7280",
                        "font": {"size": 20 if lecture else 15}, "yshift": 18})
    hidden = {"visible": False, "zeroline": False, "showgrid": False}
    layout = {"title": title_block("A large teacher, a small student", lecture), "annotations": annotations,
              "xaxis": {**hidden, "range": [-0.8, 6.0 + (len(student_sizes) - 1) * 1.2 + 0.8]},
              "yaxis": {**hidden, "range": [-4.4, 3.6], "scaleanchor": None},
              "margin": {"l": 10, "r": 10, "t": 60, "b": 10}}
    return fast_figure(data, layout, lecture, 520 if lecture else 420)


def case_study_chart(lecture_case: dict, summary: dict, dataset: str, lecture: bool = False):
    """Top-1 / test accuracy of teacher, hard-label and KD student: the lecture's ImageNet numbers (as quoted) beside
    this server's run, bars from zero so that the sizes of the gaps are honest."""
    from kdviz.core.roles import ROLE_NAMES
    from kdviz.views.charts import COLORS, fast_figure, title_block, top_margin

    groups = ["ImageNet: ResNet-152 → ResNet-50 (as quoted)", f"this server: {dataset}"]
    values = {"teacher": [lecture_case["teacher_accuracy"], summary["teacher"]["accuracy"]],
              "hard": [lecture_case["hard_accuracy"], summary["hard"]["accuracy"]],
              "kd": [lecture_case["kd_accuracy"], summary["kd"]["accuracy"]]}
    font = {"size": 18 if lecture else 14}
    data = [{"type": "bar", "name": ROLE_NAMES[role], "x": groups, "y": [100 * v for v in shown],
             "marker": {"color": COLORS[role]}, "text": [f"{100 * v:.2f}" for v in shown], "textposition": "outside",
             "textfont": font, "cliponaxis": False, "hovertemplate": "%{x}: %{y:.2f} %<extra>" + ROLE_NAMES[role]
             + "</extra>"} for role, shown in values.items()]
    layout = {"title": title_block("The case study beside this server's run: accuracy (%)", lecture),
              "barmode": "group", "bargap": 0.3, "margin": top_margin(lecture),
              "xaxis": {"type": "category", "tickfont": {"size": 18 if lecture else 14}},
              "yaxis": {"title": {"text": "top-1 / test accuracy (%)"}, "range": [0, 109]}}
    return fast_figure(data, layout, lecture, 520 if lecture else 420)
