"""Why it works: the lecture's three reasons as experiments anyone can run, change and check."""
import streamlit as st

from kdviz import ui

ui.require_router()

st.title(":material/lightbulb: Why it works")
st.markdown("The lecture gives three reasons why a small student learns better from a teacher's soft labels than "
            "from hard labels. Each tab turns one into an experiment that runs on this server in the background "
            "(stop it any time: what it measured is kept; a copied link shows it read-only), with the same numbers "
            "from `python -m kdviz experiment NAME`. The second reason, that soft labels carry how alike the classes "
            "are, is also the [image explorer's dark-knowledge heatmap](image_explorer).")
TABS = {"gradient-variance": "Soft targets: less gradient noise", "missing-class": "A digit the student never sees",
        "capacity": "Student size and data"}
# A keyed tab bar tracks its state (a rerun no longer shows the first tab again) and is bound to the URL; a shared
# link to an experiment's run opens that experiment's tab.
linked = next((label for name, label in TABS.items() if st.query_params.get(name)), None)
gradients, missing, capacity = st.tabs(list(TABS.values()), key="tab", on_change="rerun", bind="query-params",
                                       default=linked)
with gradients:
    st.markdown("**Claim:** soft targets give gradients with less variance between training cases, so a small "
                "student trains more smoothly (Hinton et al. 2015). **Measured:** at the same student weights, the "
                "gradient of the hard loss and of the soft term T²·KL for every training image (per-example, with "
                "`torch.func`), and how far a mini-batch's gradient strays from the full-batch one, relative to its "
                "length.")
    ui.why_experiment("gradient-variance")
with missing:
    st.markdown("**Claim:** soft labels carry knowledge the hard labels cannot: a student that never sees a digit "
                "can still learn it from the teacher's soft labels on the other digits (Hinton et al. 2015, §3: "
                "98.6 % of the threes right after raising the threes' output bias).")
    ui.why_experiment("missing-class")
with capacity:
    st.markdown("**Claim:** networks are over-parameterised, so a much smaller student can hold what the task "
                "needs; distillation helps most when a capable student has little data.")
    ui.why_experiment("capacity")
