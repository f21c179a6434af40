"""The label-smoothing experiment on the When it fails page: its form (ε, T, seed) and its results (the students
against T, the teachers' class-similarity heatmaps, the verdict and a table)."""
from __future__ import annotations

import dataclasses

import streamlit as st

from kdviz.ui.experiments import LIST_HELP, _numbers, _seed, register


def form(module):
    base = module.default_config()
    left, right = st.columns(2)
    smoothings = left.text_input("Teachers' label smoothing ε", ", ".join(f"{e:g}" for e in base.smoothings),
                                 key="ls.smoothings", help="Each teacher trains on (1 − ε)·one-hot + ε/C targets, "
                                                           "from the same initial weights and batches; ε in [0, 1). "
                                 + LIST_HELP)
    temperatures = right.text_input("Students' temperatures T", ", ".join(f"{t:g}" for t in base.temperatures),
                                    key="ls.temperatures", help="A KD student per teacher and T; each teacher's T is "
                                                                "chosen on validation. " + LIST_HELP)
    seed = _seed("ls.seed", base.distill.seed)
    return dataclasses.replace(base, smoothings=_numbers(smoothings, float, "label smoothings"),
                               temperatures=_numbers(temperatures, float, "temperatures"),
                               distill=dataclasses.replace(base.distill, seed=seed))


def results(run, points, summary, lecture) -> None:
    from kdviz.experiments import label_smoothing
    from kdviz.views import label_smoothing as views

    shown = label_smoothing.analyse([summary or label_smoothing.summary_from_points(points)])
    if not shown["teachers"]:
        return
    if shown["rows"]:
        st.plotly_chart(views.students_chart(shown, lecture), key=f"ls.students.{run.id}")
        st.caption("Each line: the students of one teacher, one per T; the ringed point is the T chosen on "
                   "validation (test is only reported).")
    classes = shown["classes"] or [str(c) for c in range(len(shown["teachers"][0]["matrix"]))]
    st.markdown("**Which wrong classes each teacher thinks alike** (validation, T = 1, % of the wrong classes; one "
                "colour scale for all)")
    figures = views.similarity_heatmaps(shown["teachers"], classes, lecture)
    for index, (column, figure) in enumerate(zip(st.columns(len(figures)), figures)):
        column.plotly_chart(figure, key=f"ls.heatmaps.{run.id}.{index}")  # side by side; stacked on a phone
    st.caption("Flatness: over the validation images, how evenly the teacher spreads its probability over the wrong "
               "classes at T = 1 (the normalised entropy of that spread): 1 means every wrong class looks equally "
               "(un)like the right one, so the soft label says nothing about which classes are alike.")
    if summary:
        found = shown["claims"]
        holds = found["flatter"] and found["student_worse"]
        (st.success if holds else st.warning)(shown["verdict"], icon=":material/rule:")
    st.dataframe(views.teachers_table(shown), hide_index=True,
                 column_config={key: st.column_config.NumberColumn(format="%.2f")
                                for key in ("teacher val %", "teacher test %", "off-target %", "student val %",
                                            "student test %", "KD − hard test")}
                 | {"flatness": st.column_config.NumberColumn(format="%.3f")})
    st.caption("One seed here; `python -m kdviz experiment label-smoothing --seeds 0 1 2 3 4` gives the same numbers "
               "for this seed and the spread over five (docs/PAPERS.md).")


register("label-smoothing", form, results)
