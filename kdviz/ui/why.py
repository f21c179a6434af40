"""The why-it-works page: each of the lecture's reasons as an experiment that runs in the background through the run
manager (the caller's identity, the server's budget), with live progress, a stop that keeps what was measured, and
a shareable read-only link."""
from __future__ import annotations

import dataclasses

import streamlit as st

from kdviz.ui.experiments import LIST_HELP, _numbers, _seed, register

def gradient_variance_form(module):
    base = module.default_config()
    left, middle, right = st.columns(3)
    epochs = left.text_input("Measure after epochs", ", ".join(map(str, base.epochs)), key="why.gv.epochs",
                             help="Epochs of the KD student's training at which both gradients are measured "
                                  "(0: the untrained student). " + LIST_HELP)
    temperatures = middle.text_input("Temperatures T", ", ".join(f"{t:g}" for t in base.temperatures),
                                     key="why.gv.temperatures", help="Of the soft term T²·KL. " + LIST_HELP)
    batch = right.number_input("Mini-batch size", 1, 4096, base.batch_size, key="why.gv.batch",
                               help="The batch size whose gradient noise is reported (a control: noise ∝ 1/B).")
    seed = _seed("why.gv.seed", base.distill.seed)
    return dataclasses.replace(base, epochs=_numbers(epochs, int, "epochs"),
                               temperatures=_numbers(temperatures, float, "temperatures"), batch_size=int(batch),
                               distill=dataclasses.replace(base.distill, seed=seed))


def missing_class_form(module):
    base = module.default_config()
    left, right = st.columns(2)
    omitted = left.number_input("Digit left out of the students' training", -100, 100, base.omitted,
                                key="why.mc.omitted", help="Every training image of this digit is removed.")
    with right:
        seed = _seed("why.mc.seed", base.distill.seed)
    return dataclasses.replace(base, omitted=int(omitted), distill=dataclasses.replace(base.distill, seed=seed))


def capacity_form(module):
    base = module.default_config()
    left, right = st.columns(2)
    widths = left.text_input("Student widths", ", ".join(map(str, base.widths)), key="why.cap.widths",
                             help="Hidden units per layer of the students. " + LIST_HELP)
    subsets = right.text_input("Training images (0 = all)", ", ".join(map(str, base.train_subsets)),
                               key="why.cap.subsets", help=LIST_HELP)
    seed = _seed("why.cap.seed", base.distill.seed)
    return dataclasses.replace(base, widths=_numbers(widths, int, "widths"),
                               train_subsets=_numbers(subsets, int, "training images"),
                               distill=dataclasses.replace(base.distill, seed=seed))




def _gradient_variance(run, points, summary, lecture) -> None:
    from kdviz.experiments import gradient_variance
    from kdviz.views import why

    points = summary["points"] if summary else points
    if not points:
        return
    st.plotly_chart(why.gradient_variance_chart(points, lecture), key=f"why.gv.chart.{run.id}")
    if summary:
        rows = gradient_variance.summarise([summary])
        agrees = all(row["soft_lower"] == row["n_seeds"] for row in rows)
        (st.success if agrees else st.warning)(gradient_variance.verdict(rows), icon=":material/rule:")
    st.dataframe(why.gradient_variance_table(points), hide_index=True,
                 column_config={key: st.column_config.NumberColumn(format="%.3g")
                                for key in ("hard (CE)", "soft (T²·KL)", "soft ÷ hard")})
    st.caption("One seed here; `python -m kdviz experiment gradient-variance --seeds 0 1 2 3 4` gives the same "
               "numbers for this seed and the spread over five.")


def _missing_class(run, points, summary, lecture) -> None:
    from kdviz.views import why

    if not summary:
        return
    st.plotly_chart(why.missing_class_chart(summary, lecture), key=f"why.mc.chart.{run.id}")
    kd = summary.get("kd") or summary.get("hard")
    if kd and "val_curve" in kd:
        grid = kd["val_curve"]["shift"]
        shift = st.select_slider("Bias shift of the omitted digit (try it)", grid, value=min(
            grid, key=lambda s: abs(s - kd["bias_shift"])), key=f"why.mc.shift.{run.id}",
            format_func=lambda s: f"{s:+g}", help="Added to the omitted digit's logit; validation accuracies "
                                                   "below. The numbers reported on test use the shift chosen on "
                                                   "validation.")
        st.plotly_chart(why.missing_class_curves(summary, shift, lecture), key=f"why.mc.curves.{run.id}")
        words = []
        for role, name in (("hard", "hard-label"), ("kd", "KD")):
            if role in summary and "val_curve" in summary[role]:
                here = why.at_shift(summary[role]["val_curve"], shift)
                words.append(f"{name} student: digit {summary['omitted']} {here['omitted_accuracy']:.1%}, all "
                             f"digits {here['accuracy']:.1%}")
        st.caption(f"At a shift of {shift:+g} (validation): " + "; ".join(words) + ".")
    for role, name in (("hard", "hard-label student"), ("kd", "KD student")):
        facts = summary.get(role)
        if facts:
            st.markdown(f"**{name}**: digit {summary['omitted']} {facts['omitted_accuracy_before']:.1%} → "
                        f"{facts['omitted_accuracy_after']:.1%} of its test images right after raising its output "
                        f"bias by {facts['bias_shift']:+.2f} (chosen on validation); all digits "
                        f"{facts['accuracy_before']:.1%} → {facts['accuracy_after']:.1%}.")


def _capacity(run, points, summary, lecture) -> None:
    from kdviz.views import why

    rows = summary["rows"] if summary else points
    if not rows:
        return
    left, right = st.columns(2)
    size, data = why.capacity_charts(rows, (summary or {}).get("teacher"), lecture)
    left.plotly_chart(size, key=f"why.cap.size.{run.id}")
    right.plotly_chart(data, key=f"why.cap.data.{run.id}")
    st.dataframe(rows, hide_index=True)


register("gradient-variance", gradient_variance_form, _gradient_variance)
register("missing-class", missing_class_form, _missing_class)
register("capacity", capacity_form, _capacity)
