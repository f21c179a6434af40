"""Home: knowledge distillation in a few sentences, a map of the app, the device and the default teacher's state."""
import streamlit as st

from kdviz import ui

ui.require_router()
st.title(":material/school: kdviz: knowledge distillation you can see and change")
st.markdown(
    """
A large, accurate **teacher** network has learnt more than which class is right: it also knows that a husky looks
more like a cat than like a ship. **Knowledge distillation** (Hinton, Vinyals & Dean, 2015) trains a small
**student** to imitate the teacher's **soft labels**, the softmax of its logits at a **temperature** T,
instead of only the one-hot hard labels. A higher T softens the distribution so that these small
probabilities, the "dark knowledge", become visible and carry weight in the student's loss:
"""
)
st.latex(r"q_i = \frac{\exp(z_i/T)}{\sum_j \exp(z_j/T)}, \qquad "
         r"\mathcal{L} = \alpha\, T^2\, \mathrm{KL}\big(p^{T}_{\text{teacher}} \,\|\, q^{T}_{\text{student}}\big)"
         r" + (1-\alpha)\, \mathrm{CE}\big(y, q^{1}_{\text{student}}\big)")
st.markdown("In the lecture's case study a ResNet-50 student trained this way reaches 77.75% top-1 on ImageNet "
            "instead of 76.32% with hard labels, close to its ResNet-152 teacher at half the size.")

st.subheader("What you can do here")
columns = st.columns(3)
for i, plan in enumerate(ui.PAGES[1:]):
    with columns[i % 3].container(border=True, height="stretch"):
        if plan.built:
            st.page_link(plan.path, label=f"**{plan.title}**", icon=plan.icon)
        else:
            st.caption(f"{plan.icon} **{plan.title}** · not built yet")
        st.caption(plan.blurb)


st.subheader("This machine")
from kdviz.core.engine import available_devices, resolve_device  # noqa: E402  torch: after the text above is shown
from kdviz.core.presets import DEFAULT_TEACHER  # noqa: E402

st.markdown(f"**Device:** `{resolve_device('auto')}` (available here: {', '.join(available_devices())}) · **runs "
            f"execute on** {ui.run_manager().executor.describe()}")
ui.teacher_progress(DEFAULT_TEACHER, waiting=False)  # starts the default teacher's training on a fresh server
