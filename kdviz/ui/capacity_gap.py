"""The capacity-gap experiment's form and results on the When it fails page (kdviz.experiments.capacity_gap)."""
from __future__ import annotations

import dataclasses

import streamlit as st

from kdviz.ui.experiments import LIST_HELP, _numbers, _seed, register


def capacity_gap_form(module):
    base = module.default_config()
    left, middle, right = st.columns(3)
    widths = left.text_input("Teacher widths", ", ".join(map(str, base.teacher_widths)), key="gap.widths",
                             help=f"Hidden units per layer of each fully trained teacher (mlp, depth "
                                  f"{base.distill.teacher.model.depth}, {base.distill.teacher.epochs} epochs). "
                                  + LIST_HELP)
    early = middle.number_input("Early-stopped teacher: epochs (0 = none)", 0, 1000, base.early_stop_epochs,
                                key="gap.early", help="The widest teacher's own training, stopped after this many "
                                                      "epochs: less accurate, maybe a better teacher.")
    temperatures = right.text_input("Temperatures T", ", ".join(f"{t:g}" for t in base.temperatures),
                                    key="gap.temperatures",
                                    help="Each teacher's KD student trains at each T; the T is chosen on "
                                         "validation, per teacher. " + LIST_HELP)
    seed = _seed("gap.seed", base.distill.seed)
    return dataclasses.replace(base, teacher_widths=_numbers(widths, int, "teacher widths"),
                               early_stop_epochs=int(early),
                               temperatures=_numbers(temperatures, float, "temperatures"),
                               distill=dataclasses.replace(base.distill, seed=seed))


def capacity_gap_results(run, points, summary, lecture) -> None:
    from kdviz import experiments
    from kdviz.views import capacity_gap as views

    if summary:
        rows, hard = summary.get("rows", []), summary.get("hard")
    else:
        rows = [p for p in points if p.get("kind") == "teacher"]
        hard = next((p for p in points if p.get("kind") == "hard"), None)
    if not rows:
        if hard:
            st.caption(f"The hard-label student: {hard['val_accuracy']:.1%} on validation, {hard['accuracy']:.1%} "
                       "on test. The teachers come next.")
        return
    module = experiments.experiment("capacity-gap")
    result = module.report(experiments.from_record(run.config), [{"seed": run.config["distill"]["seed"],
                                                                   "rows": rows, "hard": hard}])
    best, taught = result["best_teacher_on_validation"], result["best_student_on_validation"]
    st.plotly_chart(views.gap_chart(result["rows"], best, taught, lecture), key=f"gap.chart.{run.id}")
    if summary:
        (st.success if result["claim_holds"] else st.warning)(result["verdict"], icon=":material/rule:")
    st.dataframe(views.table_rows(result["rows"]), hide_index=True,
                 column_config={key: st.column_config.NumberColumn(format="%.2f")
                                for key in ("teacher validation %", "teacher test %", "student validation %",
                                            "student test %")}
                 | {"parameters": st.column_config.NumberColumn(format="localized")})
    st.caption(f"The student: mlp {result['student']['spec']['width']}×{result['student']['spec']['depth']} "
               f"({result['student']['params']:,} parameters), the same initial weights and batches for every "
               "teacher. One seed here; `python -m kdviz experiment capacity-gap --seeds 0 1 2 3 4` gives the same "
               "numbers for this seed and the spread over five (docs/PAPERS.md).")


register("capacity-gap", capacity_gap_form, capacity_gap_results)
