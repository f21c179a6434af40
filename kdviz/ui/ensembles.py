"""The ensembles page: a worked example of combining teachers (instant, no training), and the ensemble experiment
as a background run (kdviz.ui.experiments)."""
from __future__ import annotations

import dataclasses

import streamlit as st

from kdviz.ui.experiments import LIST_HELP, _numbers, _seed, register


def worked_example(lecture: bool) -> None:
    """Hand-made logits for the lecture's four classes: edit them, move T, see the two targets and the three losses'
    gradients (the per-teacher KL terms' equal the averaged probabilities')."""
    import pandas as pd

    from kdviz.views import ensembles as views

    frame = pd.DataFrame([list(t) for t in views.EXAMPLE_TEACHERS] + [list(views.EXAMPLE_STUDENT)],
                         columns=list(views.EXAMPLE_CLASSES),
                         index=[f"teacher {chr(65 + i)}" for i in range(len(views.EXAMPLE_TEACHERS))] + ["student"])
    left, right = st.columns([3, 2])
    with right:
        st.markdown("**Logits** (edit any cell)")
        edited = st.data_editor(frame, key="ens.example.logits", width="stretch")
        temperature = st.slider("Temperature T", 0.5, 20.0, 4.0, 0.5, key="ens.example.t")
    try:
        values = edited.astype(float).to_numpy()
        example = views.worked_example(values[:-1], values[-1], temperature)
    except (ValueError, TypeError) as error:
        right.error(f"These logits cannot be used: {error}", icon=":material/warning:")
        return
    left.plotly_chart(views.example_chart(example, lecture=lecture), key="ens.example.chart")
    st.dataframe(views.example_table(example), hide_index=True,
                 column_config={key: st.column_config.NumberColumn(format="%.4f")
                                for key in views.example_table(example)[0] if key != "loss"})
    st.caption(f"Gradients are on the student's logits, T²-scaled as the engine trains. The first two rows have the "
               f"same gradient: averaging the per-teacher KL terms is KL to the averaged probabilities plus a "
               f"constant the student cannot change, the teachers' own disagreement (here "
               f"{example['disagreement']:.4f}). Averaging logits is a different target: the normalised geometric "
               "mean of the teachers' probabilities, which punishes a class any one teacher rules out.")


BASES = {"quick": "digits 8×8, mlp 256×2 teachers (seconds)",
         "lecture": "the lecture preset: mnist5k, 1200×2 teachers (≈100 s the first time, then ≈30 s)"}


def ensemble_form(module):
    from kdviz.views.ensembles import COMBINE_NAMES

    from kdviz.core.presets import get_preset

    base = module.default_config()
    setting = st.radio("Teachers and students", BASES, key="ens.base", horizontal=True, format_func=BASES.get,
                       help="Both use the preset's teacher and student settings; more teachers are the same "
                            "teacher with other seeds.")
    if setting == "lecture":
        base = dataclasses.replace(base, distill=get_preset("lecture"))
    left, middle, right = st.columns(3)
    n = left.number_input(f"Teachers ({module.MIN_TEACHERS} to {module.MAX_TEACHERS})", 0, 20, base.n_teachers,
                          key="ens.n", help="Teacher i trains with the base teacher's seed + i; each is cached, so "
                                            "a second run reuses them.")
    widths = middle.text_input("Teacher widths (blank: all the base teacher's)", "", key="ens.widths",
                               help="One width per teacher, to mix sizes. " + LIST_HELP)
    combine = right.radio("Combine the teachers by", module.COMBINES, key="ens.combine",
                          format_func=lambda mode: COMBINE_NAMES[mode],
                          help="The student's soft targets at T: the mean of the teachers' probabilities, or the "
                               "softmax of their mean logits.")
    seed = _seed("ens.seed", base.distill.seed)
    return dataclasses.replace(base, n_teachers=int(n), combine=combine,
                               teacher_widths=_numbers(widths, int, "teacher widths") if widths.strip() else (),
                               distill=dataclasses.replace(base.distill, seed=seed))


def ensemble_results(run, points, summary, lecture) -> None:
    from kdviz import experiments
    from kdviz.views import ensembles as views

    shown = summary or views.summary_from_points(points)
    if not shown.get("teachers"):
        return
    st.plotly_chart(views.accuracy_chart(shown, lecture), key=f"ens.chart.{run.id}")
    if summary:
        module = experiments.experiment("ensemble")
        result = module.report(experiments.from_record(run.config), [{"seed": summary.get("seed"), **summary}])
        wins = result["summary"].get("ensemble_beats_single_val", 0)
        (st.success if wins else st.warning)(result["verdict"], icon=":material/rule:")
    st.markdown("**Teachers** (the best is chosen on validation)")
    st.dataframe(views.teacher_rows(shown), hide_index=True,
                 column_config={k: st.column_config.NumberColumn(format="%.2f") for k in ("validation %", "test %")})
    st.markdown("**What one prediction costs**")
    st.dataframe(views.cost_rows(shown), hide_index=True,
                 column_config={"parameters": st.column_config.NumberColumn(format="localized"),
                                "FLOPs per prediction": st.column_config.NumberColumn(format="%.3g"),
                                "× student": st.column_config.NumberColumn(format="%.1f×")})
    students = views.student_rows(shown)
    if students:
        st.markdown("**The students** (same initial weights, same batches; only the targets differ)")
        st.dataframe(students, hide_index=True,
                     column_config={k: st.column_config.NumberColumn(format="%.2f")
                                    for k in ("validation %", "test %", "agrees with its teacher %")})
        st.caption("The hard-label student's agreement is with the ensemble. One seed here; `python -m kdviz "
                   "experiment ensemble --seeds 0 1 2 3 4` gives the same numbers for this seed and the spread.")


register("ensemble", ensemble_form, ensemble_results)
