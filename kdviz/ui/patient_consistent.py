"""The patient-and-consistent experiment's form and results on the When it fails page (kdviz.ui.experiments runs it):
the epoch counts to report, the jitter and the seed; the three students' curves, the gap, the verdict and a table."""
from __future__ import annotations

import dataclasses

import streamlit as st

from kdviz.ui.experiments import LIST_HELP, _numbers, _seed, register


def form(module):
    base = module.default_config()
    left, middle, right = st.columns(3)
    epochs = left.text_input("Report after epochs", ", ".join(map(str, base.epochs)), key="pc.epochs",
                             help="Ascending epoch counts at which the students are compared; both runs last the "
                                  "largest (one run per teacher gives every count: the learning rate is constant). "
                                  + LIST_HELP)
    jitter = middle.number_input("Jitter (pixels)", 0, 8, base.distill.augment, key="pc.jitter",
                                 help="Each training image is shifted by up to this many pixels, a new shift every "
                                      "time it is drawn: the augmentation whose views the teacher labels (or not).")
    with right:
        seed = _seed("pc.seed", base.distill.seed)
    return dataclasses.replace(base, epochs=_numbers(epochs, int, "epochs"), distill=dataclasses.replace(
        base.distill, augment=int(jitter), seed=seed))


def results(run, points, summary, lecture) -> None:
    from kdviz.experiments import patient_consistent as experiment
    from kdviz.views import patient_consistent as views

    measured = summary["points"] if summary else points
    curve = experiment.by_epoch(measured)
    if not curve:
        return
    split = st.radio("Accuracy on", ("val_", ""), key=f"pc.split.{run.id}", horizontal=True,
                     format_func=lambda s: "validation (what chooses)" if s else "test (only reported)")
    left, right = st.columns([3, 2])
    left.plotly_chart(views.accuracy_chart(curve, split, lecture), key=f"pc.chart.{run.id}")
    right.plotly_chart(views.gap_chart(curve, lecture), key=f"pc.gap.{run.id}")
    if summary:
        rows = experiment.summarise([summary])
        chosen = experiment.chosen_on_validation(rows, [summary])
        if rows:
            (st.success if experiment.agrees(rows, chosen) else st.warning)(
                experiment.verdict(rows, chosen), icon=":material/rule:")
    if summary and summary.get("teacher_views"):
        st.caption(experiment.views_words(summary["teacher_views"]))
    table = views.table(curve)
    if table:
        st.dataframe(table, hide_index=True)
    st.caption("Same seed, so the same initial weights, batches and jitter: the two KD students differ only in "
               "whose view the teacher labelled. One seed here; `python -m kdviz experiment patient-consistent "
               "--seeds 0 1 2 3 4` gives the same numbers for this seed and the spread over five.")


register("patient-consistent", form, results)
