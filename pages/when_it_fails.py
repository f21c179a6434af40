"""When distillation fails: the mistakes everyone makes when writing KD, and three later papers checked in miniature."""
import streamlit as st

from kdviz import ui

ui.require_router()

st.title(":material/report: When distillation fails")
st.markdown("The lecture tells why distillation works. Later papers found where it does not, and the code people "
            "write for it often has one of a few mistakes. Each paper below is an experiment that runs on this "
            "server in the background (stop it any time: what it measured is kept; a copied link shows it "
            "read-only), with the same numbers from `python -m kdviz experiment NAME`. Every choice is made on "
            "validation; test is only reported. The numbers over five seeds, and the commands, are in "
            "docs/PAPERS.md.")
st.info("**The common mistakes** (a KL with the wrong reduction, T² left out, KL on probabilities, KL the wrong way "
        "round, a teacher left in training mode, α swapped) are switches where they happen: their numbers for the "
        "lecture's logits on [Soft labels & temperature](soft_labels?mistake=naive-kl&temperature=0.1), and a run "
        "with the mistake beside the correct loss on [Live distillation](live_distillation).",
        icon=":material/bug_report:")
TABS = {"capacity-gap": "Capacity gap: does the best teacher teach best?",
        "label-smoothing": "Label smoothing: a smoothed teacher",
        "patient-consistent": "Patient and consistent: the teacher's view"}
# a keyed tab bar bound to the URL (as on Why it works): a shared link to a run opens its experiment's tab
linked = next((label for name, label in TABS.items() if st.query_params.get(name)), None)
gap, smoothing, patient = st.tabs(list(TABS.values()), key="tab", on_change="rerun", bind="query-params",
                                  default=linked)
with gap:
    st.markdown("**Claim** (Cho & Hariharan 2019, *On the efficacy of knowledge distillation*): a more accurate "
                "teacher does not always make a better student; a small student can learn better from a smaller "
                "or an early-stopped teacher. **Here:** one small student, taught by teachers of growing size and "
                "by an early-stopped teacher.")
    ui.experiment_tab("capacity-gap")
with smoothing:
    st.markdown("**Claim** (Müller, Kornblith & Hinton 2019, *When does label smoothing help?*): a teacher trained "
                "with label smoothing is more accurate, but its soft labels lose how alike the classes are, and its "
                "student distils worse. Chandrasegaran et al. (2022) report that such teachers can still teach at a "
                "low temperature. **Here:** digits teachers trained with label smoothing ε, how evenly their soft "
                "labels spread over the wrong classes (their dark knowledge), and their students at several T, each "
                "teacher's T chosen on validation.")
    ui.experiment_tab("label-smoothing")
with patient:
    st.markdown("**Claim** (Beyer et al. 2022, *Knowledge distillation: a good teacher is patient and "
                "consistent*): the teacher should label the very augmented view the student sees (consistent), "
                "and the student needs long training (patient); teacher logits cached once on unaugmented images "
                "fall behind. **Here:** the lecture preset's MNIST student with ±2-pixel jitter, taught both ways "
                "from the same seed (same initial weights, batches and jitter): a consistent teacher labels each "
                "jittered view, a fixed teacher's logits are computed once on the unjittered images; the hard-label "
                "student beside them. One long run each, read at growing epochs (the learning rate is constant, so "
                "epoch E of a long run is a run of E epochs). Over five seeds, ±2 pixels hardly change this "
                "teacher's labels and the two teachers tie; at ±4 (set the jitter to 4) the consistent teacher wins "
                "by about a point, and longer training narrows the gap instead of widening it (docs/PAPERS.md).")
    ui.experiment_tab("patient-consistent")
