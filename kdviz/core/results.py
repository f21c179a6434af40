"""Results over seeds, computed once for the CLI, the app and the sweeps: means, spreads, errors and wins, on
validation (what choices read) and on test (what is reported).

Plain Python (no torch): a run's summary is a dict of model facts as `engine.model_facts` writes them.
"""
from __future__ import annotations

import statistics

from kdviz.core.roles import MISTAKE, ROLE_NAMES, STUDENTS


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _reduction(before: float, after: float) -> float:
    return (before - after) / before if before else 0.0


def seed_summary(runs: list[dict], n_test: int, n_val: int, roles: tuple[str, ...] = STUDENTS) -> dict:
    """runs: one {"hard": facts, "kd": facts} per seed → the statistics every table and choice uses.

    Accuracies are means ± std over the seeds; errors are mean counts out of n_test (n_val); a win is a seed on
    which the KD student makes strictly fewer errors than its hard-label twin. The `val_` keys are what sweeps rank
    by; the others (test) are only reported. roles=("hard",): a baseline trained alone (no wins, no reduction).
    """
    out: dict = {"n_seeds": len(runs), "n_test": n_test, "n_val": n_val}
    for split, key, n in (("", "accuracy", n_test), ("val_", "val_accuracy", n_val)):
        errors = {}
        for role in roles:
            values = [run[role][key] for run in runs]
            out[f"{role}_{split}mean"], out[f"{role}_{split}std"] = mean_std(values)
            errors[role] = [round((1 - v) * n) for v in values]
            out[f"{role}_{split}errors_mean"] = statistics.mean(errors[role])
        if not set(STUDENTS) <= set(roles):
            continue
        out[f"kd_{split}wins"] = sum(k < h for h, k in zip(errors["hard"], errors["kd"]))
        out[f"{split}relative_error_reduction"] = _reduction(out[f"hard_{split}errors_mean"],
                                                             out[f"kd_{split}errors_mean"])
    for role in roles:  # fidelity to the teacher (test set; runs from before it was measured lack it)
        for key in ("agreement", "kl_to_teacher"):
            if all(run[role].get(key) is not None for run in runs):
                out[f"{role}_{key}_mean"], out[f"{role}_{key}_std"] = mean_std([run[role][key] for run in runs])
    return out


def case_rows(teacher: dict, student: dict, stats: dict) -> list[dict]:
    """The lecture's case-study table (teacher / hard-label student / KD student) for one run or many seeds.

    teacher, student: model facts (parameters, size, and the teacher's accuracies); stats: seed_summary(...).
    Each row: role, name, params, size_bytes, val_accuracy, val_std, accuracy, std, errors (mean, of n_test),
    smaller (× fewer parameters than the teacher), gain (KD − hard-label, test points; KD row only), and the
    student's fidelity to the teacher on test: agreement (top-1) and kl_to_teacher (None for the teacher and for
    runs that did not measure them).
    """
    rows = [{"role": "teacher", "name": ROLE_NAMES["teacher"], "params": teacher["params"],
             "size_bytes": teacher["size_bytes"], "val_accuracy": teacher["val_accuracy"], "val_std": 0.0,
             "accuracy": teacher["accuracy"], "std": 0.0, "errors": teacher["errors"], "smaller": None,
             "gain": None, "agreement": None, "kl_to_teacher": None}]
    for role in STUDENTS + ((MISTAKE,) if f"{MISTAKE}_mean" in stats else ()):  # a third student with a mistake
        rows.append({"role": role, "name": ROLE_NAMES[role], "params": student["params"],
                     "size_bytes": student["size_bytes"], "val_accuracy": stats[f"{role}_val_mean"],
                     "val_std": stats[f"{role}_val_std"], "accuracy": stats[f"{role}_mean"],
                     "std": stats[f"{role}_std"], "errors": stats[f"{role}_errors_mean"],
                     "smaller": teacher["params"] / student["params"],
                     "gain": stats[f"{role}_mean"] - stats["hard_mean"] if role != "hard" else None,
                     "agreement": stats.get(f"{role}_agreement_mean"),
                     "kl_to_teacher": stats.get(f"{role}_kl_to_teacher_mean")})
    return rows


def mistake_sentence(stats: dict, mistake: str) -> str:
    """One sentence on the third student of a run with a mistake: its test errors beside the correct KD student's."""
    from kdviz.core.kd import get_mistake

    n, label = stats["n_seeds"], get_mistake(mistake).label
    fmt = (lambda v: f"{v:g}") if n == 1 else (lambda v: f"{v:.1f}")
    means = "" if n == 1 else f" (means over {n} seeds)"
    return (f"With the mistake “{label}” the KD student made {fmt(stats[f'{MISTAKE}_errors_mean'])} test errors; "
            f"with the correct loss, on the same batches from the same weights, {fmt(stats['kd_errors_mean'])}, "
            f"and the hard-label student {fmt(stats['hard_errors_mean'])}{means}.")


def verdict(stats: dict) -> tuple[bool, str]:
    """(KD won?, one plain sentence on test errors) — said plainly when KD lost or made no difference."""
    n, hard, kd = stats["n_seeds"], stats["hard_errors_mean"], stats["kd_errors_mean"]
    change = 100 * (stats["kd_mean"] - stats["hard_mean"])
    seeds = "" if n == 1 else f" (means over {n} seeds; KD better on {stats['kd_wins']} of {n})"
    fmt = (lambda v: f"{v:g}") if n == 1 else (lambda v: f"{v:.1f}")
    if kd < hard:
        return True, (f"Distillation helped: the KD student made {fmt(kd)} test errors instead of {fmt(hard)} "
                      f"({change:+.2f} points, {_reduction(hard, kd):.0%} fewer errors) with the same "
                      f"architecture{seeds}.")
    if kd == hard:
        return False, f"Distillation made no difference: both students made {fmt(kd)} test errors{seeds}."
    return False, (f"Distillation did NOT help: the KD student made {fmt(kd)} test errors, the hard-label student "
                   f"{fmt(hard)} ({change:+.2f} points){seeds}. KD is not free: try a more capable student, fewer "
                   f"training images, or another temperature.")
