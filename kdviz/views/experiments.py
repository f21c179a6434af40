"""An experiment run's events as what every experiment page shows: its measured points and its progress."""
from __future__ import annotations


def measured_points(events: list[dict]) -> list[dict]:
    """The points an experiment run has measured so far (its Measured events), in order."""
    return [event["point"] for event in events if event.get("event") == "Measured"]


def experiment_progress(events: list[dict]) -> tuple[float, str]:
    """(fraction, words) of an experiment run: its teacher phase, then its measured points."""
    measured = [e for e in events if e.get("event") == "Measured"]
    if measured:
        last = measured[-1]
        return last["done"] / max(last["total"], 1), f"{last['done']} of {last['total']} points measured"
    teacher = [e for e in events if e.get("phase") == "teacher" and e.get("event") == "StepLosses"]
    if teacher and not any(e.get("phase") != "teacher" for e in events):
        return 0.0, "training the teacher (once; then cached)"
    epochs = [e for e in events if e.get("phase") == "experiment" and e.get("event") == "EpochEnd"]
    if epochs:
        return 0.0, f"training the students: epoch {epochs[-1]['epoch']}"
    return 0.0, "training the first student"
