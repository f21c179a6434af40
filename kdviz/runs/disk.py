"""The disk quota: finished runs keep their students' weights and event logs, so a semester of runs would fill the
disk; before a run is queued its estimated bytes (kdviz.core.budget.estimate_disk) must fit the server's quota and
its browser's, and room is made by removing finished runs, never a live one.

Who pays: a browser over its own quota makes room from its own oldest finished runs. A server over its quota takes
the oldest finished run of the browser that uses the most disk (the new run counts for its browser), again and
again, so whoever fills the disk loses their own old runs first; then the least recently used custom teachers of the
teacher cache (never a preset's teacher, nor one a live run uses). The whole plan is made before anything is removed:
a run that cannot fit removes nothing. Each removed run leaves its browser a notice (kdviz.runs.index) the history
page shows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kdviz.core.budget import OverBudget, format_bytes


class DiskFull(ValueError):
    """No room can be made for a run without removing a live run; the message says whose runs hold the disk."""


@dataclass
class Plan:
    """What to remove to make room: index rows of finished runs, and teacher files."""

    runs: list = field(default_factory=list)
    teachers: list[Path] = field(default_factory=list)


def check_fits(cost, settings) -> None:
    """Refuse a run whose estimate alone is over the server's or a browser's disk quota (OverBudget, limit "disk"):
    no removal could make room for it."""
    size = getattr(cost, "disk_bytes", 0)  # an experiment's cost (None) has no students' weights to keep
    limits = [(limit, name) for limit, name in ((settings.max_disk_per_browser_bytes, "per browser"),
                                                (settings.max_disk_bytes, "in all")) if limit is not None]
    for limit, name in limits:
        if size > limit:
            raise OverBudget(f"This run would keep ≈{format_bytes(size)} on disk (its students' weights and "
                             f"its event log); this server keeps at most {format_bytes(limit)} of runs {name}. What "
                             "would fit: a smaller student, fewer epochs or a larger batch size.", "disk", cost,
                             settings.budget)


def plan_room(store, settings, owner: str, need: int, live: list) -> Plan:
    """What must go so that `need` more bytes for owner fit both quotas; DiskFull when even removing every finished
    run (and custom teacher) would not do. live: the live runs in memory (their estimates count as used)."""
    plan = Plan()
    if settings.max_disk_bytes is None and settings.max_disk_per_browser_bytes is None:
        return plan
    usage = store.index.bytes_by_owner()
    if usage is None:  # the index cannot be read: no accounting, no removal (the folders are the truth)
        return plan
    for run in live:  # a live run's folder grows up to its estimate; its row holds what it had written so far
        usage[run.owner] = usage.get(run.owner, 0) + getattr(run, "disk_bytes", 0)
    usage[owner] = usage.get(owner, 0) + need
    queues: dict[str, list] = {}

    def remove_oldest(of: str) -> bool:
        if of not in queues:
            queues[of] = store.index.oldest_finished(of)
        if not queues[of]:
            return False
        row = queues[of].pop(0)
        plan.runs.append(row)
        usage[of] -= row.bytes
        return True

    per_browser = settings.max_disk_per_browser_bytes
    while per_browser is not None and usage[owner] > per_browser:
        if not remove_oldest(owner):
            raise DiskFull(f"Your runs would hold {format_bytes(usage[owner])} on this server's disk with this one, "
                           f"and it keeps at most {format_bytes(per_browser)} per browser; what is left is your live "
                           "runs. Wait until one finishes, or stop one.")
    limit = settings.max_disk_bytes
    if limit is None:
        return plan
    teachers = _removable_teachers(live)
    total = sum(usage.values()) + sum(size for _, size in teachers)
    while total > limit:
        owners = sorted(usage, key=lambda who: usage[who], reverse=True)
        before = sum(usage.values())
        if any(remove_oldest(who) for who in owners):
            total -= before - sum(usage.values())
        elif teachers:
            path, size = teachers.pop(0)
            plan.teachers.append(path)
            total -= size
        else:
            raise DiskFull(f"This server's disk quota ({format_bytes(limit)}) is held by live runs and preset "
                           "teachers; try again when some runs finish.")
    return plan


def _removable_teachers(live: list) -> list[tuple[Path, int]]:
    """Cached teachers a removal may take, least recently used first: not a preset's, nor one a live run uses."""
    from kdviz.core.presets import PRESETS
    from kdviz.core.teachers import cached_teachers, teacher_path

    kept = set()
    for config in [preset for _, preset in PRESETS.values()] + [run.config_object for run in live]:
        teacher = getattr(config, "teacher", None) or getattr(getattr(config, "distill", None), "teacher", None)
        if teacher is not None:
            try:
                kept.add(teacher_path(teacher, getattr(config, "device", "auto")))
            except ValueError:
                continue
    return [(path, size) for path, size, _ in cached_teachers() if path not in kept]
