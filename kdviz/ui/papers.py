"""The later papers' experiments (the When it fails page): each module registers its form and results drawer."""
from kdviz.ui import capacity_gap, label_smoothing, patient_consistent  # noqa: F401 — each registers itself
