"""The roles a model plays in kdviz, named once: every page, table, chart and the CLI read them from here.

numpy-free and torch-free, so that the soft-labels page can import it without paying torch's import cost.
"""
from __future__ import annotations

STUDENTS = ("hard", "kd")  # the two students of every distillation, in this order everywhere
MISTAKE = "mistake"  # a third student, trained beside them with a common mistake in its KD loss (kd.MISTAKES)
STUDENT_ROLES = ("untrained", *STUDENTS)  # a page may also show the students' common starting point
ROLE_NAMES = {"teacher": "teacher", "hard": "hard-label student", "kd": "KD student", "label": "hard label",
              "untrained": "untrained student", MISTAKE: "KD with the mistake"}
# The ensembles and compression pages' further roles (kdviz.experiments.ensemble / compression).
ROLE_NAMES |= {"ensemble": "ensemble of teachers", "best_teacher_kd": "KD student of the best teacher",
               "ensemble_kd": "KD student of the ensemble", "kd_int8": "KD student, int8"}
