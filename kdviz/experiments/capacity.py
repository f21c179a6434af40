"""Capacity: when does distillation help? Test accuracy of the hard-label and the KD student against the student's
size, and against the size of the transfer set (the images both students train on).

Two curves of cells; each cell is one kdviz.core.engine.distill run (both students: same initial weights, same
batches, only the loss differs):

* the width curve: students of every width in `widths` (depth, T, α, epochs... the base config's), each trained on
  `width_subset` images (default: the base config's subset), the teacher's size drawn as a line;
* the data curve: students of width `data_width` (default: the base config's) trained on every size in
  `train_subsets` (0 = the whole training part).

The curves always cross at (data_width, width_subset): that cell is run once and belongs to both. Every cell reports
validation beside test; "where KD helped most" is chosen on validation and then reported on test (the house rule).
On the quick preset's sweep (sweeps/SWEEP_QUICK.md) KD helped most with a capable student and 100 images and lost on
every all-data row; this experiment shows both.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator

from torch import nn

from kdviz.core.flags import flag
from kdviz.core.engine import DistillConfig, Diverged, Finished, Notice, StopCheck, check_config, distill
from kdviz.experiments.events import Measured

NAME = "capacity"
MAX_WIDTH = 8192
MAX_POINTS = 24  # widths (or subsets) per curve


@dataclass(frozen=True)
class CapacityConfig:
    """The grid: `distill` is the base config (teacher, student architecture and depth, T, α, epochs, lr, seed...);
    the width curve trains students of each of `widths` on `width_subset` images, the data curve students of width
    `data_width` on each of `train_subsets` images (0 = all). None: the base config's train_subset / student width."""

    distill: DistillConfig
    widths: tuple[int, ...] = flag((8, 16, 32, 64, 128, 256), "--widths",
                                   "student widths of the width curve (default {default})", "W")
    train_subsets: tuple[int, ...] = flag((50, 100, 300, 600, 0), "--subsets",
                                          "training-set sizes of the data curve, 0 = all (default {default})", "N")
    width_subset: int | None = flag(None, "--width-subset", "training images of the width curve, 0 = all (default: "
                                    "the base config's train subset)", "N")
    data_width: int | None = flag(None, "--data-width",
                                  "student width of the data curve (default: the base config's student width)", "W")


def default_config() -> CapacityConfig:
    """The offline default (12-14 s a seed on one thread of a 2-core machine, teacher included): the quick preset's
    digits teacher (mlp 256×2) and its students' settings (T = 20, α = 0.9, 80 epochs, AdamW 1e-2, batch 64) without
    jitter (on 8×8 images a ±2-pixel shift mostly hurts the hard-label twin: sweeps/SWEEP_QUICK.md); students of width
    8 to 256 (the teacher's) on 100 images, and the 128×2 student on 50 to all 1151 images."""
    from kdviz.core.presets import get_preset

    return CapacityConfig(dataclasses.replace(get_preset("quick"), augment=0))


def fixed_subset(config: CapacityConfig) -> int:
    """The training-set size of the width curve (0 = all)."""
    return config.distill.train_subset if config.width_subset is None else config.width_subset


def fixed_width(config: CapacityConfig) -> int:
    """The student width of the data curve."""
    return config.distill.student.width if config.data_width is None else config.data_width


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check(config: CapacityConfig) -> CapacityConfig:
    """ValueError (one line, naming the value) for a bad width, subset or grid; loads the dataset to know its size."""
    from kdviz.core.data import load_dataset

    check_config(config.distill)
    for name, values in (("widths", config.widths), ("train subsets", config.train_subsets)):
        if not isinstance(values, tuple):
            raise ValueError(f"{name} must be a tuple of integers, got {values!r}")
        if not values:
            raise ValueError(f"the capacity grid is empty: give at least one of {name}, got {values!r}")
        if len(set(values)) > MAX_POINTS:
            raise ValueError(f"at most {MAX_POINTS} {name}, got {len(set(values))}")
    for width in config.widths + (fixed_width(config),):
        if not (_is_int(width) and 1 <= width <= MAX_WIDTH):
            raise ValueError(f"student widths must be integers in [1, {MAX_WIDTH}], got {width!r}")
    subsets = config.train_subsets + (fixed_subset(config),)
    for subset in subsets:
        if not (_is_int(subset) and subset >= 0):
            raise ValueError(f"train subsets must be integers >= 0 (0 = all images), got {subset!r}")
    n_train = len(load_dataset(config.distill.dataset).train_y)
    too_big = [s for s in subsets if s > n_train]
    if too_big:
        raise ValueError(f"train subset {too_big[0]} is larger than {config.distill.dataset}'s training set "
                         f"({n_train} images; 0 = all)")
    return config


def _ordered_subsets(subsets) -> list[int]:
    """Ascending, 0 (all images) last."""
    return sorted(set(subsets), key=lambda s: (s == 0, s))


def cells(config: CapacityConfig) -> list[dict]:
    """The grid's cells in the order they run: the width curve (ascending widths at the fixed subset), then the data
    curve (ascending sizes, all last, at the fixed width) without the crossing cell, which the width curve has:
    [{"width", "train_subset", "curves": ("width",) | ("data",) | ("width", "data")}]."""
    subset, width = fixed_subset(config), fixed_width(config)
    out = [{"width": w, "train_subset": subset, "curves": ("width", "data") if w == width else ("width",)}
           for w in sorted(set(config.widths) | {width})]
    out += [{"width": width, "train_subset": s, "curves": ("data",)}
            for s in _ordered_subsets(set(config.train_subsets) | {subset}) if s != subset]
    return out


def cell_config(config: CapacityConfig, cell: dict) -> DistillConfig:
    """The base config with only the student's width and the training-set size changed."""
    base = config.distill
    return dataclasses.replace(base, student=dataclasses.replace(base.student, width=cell["width"]),
                               train_subset=cell["train_subset"])


def grid(config: CapacityConfig) -> list[DistillConfig]:
    """The DistillConfig of every cell, both curves, the crossing once (see cells)."""
    return [cell_config(config, cell) for cell in cells(config)]


def teacher_facts(teacher: nn.Module, dataset_name: str) -> dict:
    """The teacher's line on the width curve: parameters and test accuracy, validation beside it."""
    from kdviz.core.data import load_dataset
    from kdviz.core.engine import accuracy
    from kdviz.core.models import count_parameters

    dataset = load_dataset(dataset_name)
    device = next(teacher.parameters()).device
    return {"params": count_parameters(teacher),
            "accuracy": accuracy(teacher, dataset.test_x.to(device), dataset.test_y.to(device)),
            "val_accuracy": accuracy(teacher, dataset.val_x.to(device), dataset.val_y.to(device))}


def run(config: CapacityConfig, teacher: nn.Module, should_stop: StopCheck | None = None) -> Iterator:
    """Yield Measured after each cell (its row), the engine's Notice and Diverged events, then Finished with
    {"rows": [...], "teacher": {...}}; stopping keeps the rows measured so far (status "cancelled"). A cell that
    diverges gets no row (a Notice says which)."""
    check(config)
    teacher = teacher.eval()
    facts = teacher_facts(teacher, config.distill.dataset)
    plan = cells(config)
    rows, skipped, status = [], [], "completed"
    for done, cell in enumerate(plan, 1):
        if should_stop is not None and should_stop():
            status = "cancelled"
            break
        finished = None
        for event in distill(cell_config(config, cell), teacher, should_stop):
            if isinstance(event, Finished):
                finished = event
            elif isinstance(event, (Notice, Diverged)):
                yield event
        if finished is None or finished.status == "cancelled":
            status = "cancelled"
            break
        if finished.status != "completed":
            skipped.append(cell)
            yield Notice(f"the cell width {cell['width']}, {_images(cell['train_subset'])} {finished.status}; "
                         "it has no row")
            continue
        summary = finished.summary
        row = {"width": cell["width"], "train_subset": cell["train_subset"], "n_train": summary["n_train"],
               "params": summary["hard"]["params"],
               "hard_accuracy": summary["hard"]["accuracy"], "kd_accuracy": summary["kd"]["accuracy"],
               "hard_val_accuracy": summary["hard"]["val_accuracy"], "kd_val_accuracy": summary["kd"]["val_accuracy"],
               "curve": cell["curves"][0], "curves": list(cell["curves"]), "seconds": summary["seconds"]}
        rows.append(row)
        yield Measured(done, len(plan), row)
    yield Finished(status, {"rows": rows, "teacher": facts, "seed": config.distill.seed,
                            "n_cells": len(plan), "skipped": skipped})


def _images(subset: int) -> str:
    return "all images" if subset == 0 else f"{subset} images"


def summarise(runs: list[dict]) -> list[dict]:
    """Per cell over seeds: mean and std of both students' validation and test accuracy and of KD − hard, and on how
    many seeds KD was strictly better (validation, test)."""
    from kdviz.core.results import mean_std

    groups: dict[tuple, list[dict]] = {}
    for result in runs:
        for row in result["rows"]:
            groups.setdefault((row["width"], row["train_subset"]), []).append(row)
    out = []
    for (width, subset), rows in groups.items():
        first = rows[0]
        summary = {"width": width, "train_subset": subset, "n_train": first["n_train"], "params": first["params"],
                   "curve": first["curve"], "curves": first["curves"], "n_seeds": len(rows)}
        for key in ("hard_accuracy", "kd_accuracy", "hard_val_accuracy", "kd_val_accuracy"):
            summary[key], summary[f"{key}_std"] = mean_std([r[key] for r in rows])
        for split in ("", "val_"):
            gains = [r[f"kd_{split}accuracy"] - r[f"hard_{split}accuracy"] for r in rows]
            summary[f"{split}gain"], summary[f"{split}gain_std"] = mean_std(gains)
            summary[f"kd_{split}wins"] = sum(g > 0 for g in gains)
        out.append(summary)
    order = {"width": 0, "data": 1}
    return sorted(out, key=lambda r: (order[r["curve"]], r["width"], r["train_subset"] == 0, r["train_subset"]))


def curves(rows: list[dict]) -> dict:
    """The two series to plot: {"width": rows by parameters, "data": rows by training images}."""
    return {"width": sorted((r for r in rows if "width" in r["curves"]), key=lambda r: r["params"]),
            "data": sorted((r for r in rows if "data" in r["curves"]), key=lambda r: r["n_train"])}


def best_on_validation(rows: list[dict]) -> dict | None:
    """The cell where KD's mean validation gain is largest (ties: the smaller student, then fewer images)."""
    if not rows:
        return None
    return max(rows, key=lambda r: (r["val_gain"], -r["params"], -r["n_train"]))


def hurt_on_validation(rows: list[dict]) -> list[dict]:
    """The cells where the KD student's mean validation accuracy is below its hard-label twin's."""
    return [r for r in rows if r["val_gain"] < 0]


# ---- the experiment's contract (kdviz.experiments): budget, command-line options, report -----------------------

def budget_configs(config: CapacityConfig) -> list[DistillConfig]:
    """The trainings it does (for the server's budget): one distill run per cell."""
    return grid(config)


def report(config: CapacityConfig, runs: list[dict]) -> dict:
    """The JSON of `python -m kdviz experiment capacity`: runs is [{"seed", **Finished.summary}]. "rows" are the
    per-cell means over seeds (with _std keys), "runs" the per-seed rows; the marks are chosen on validation."""
    from kdviz.core.results import mean_std

    rows = summarise(runs)
    teachers = [run["teacher"] for run in runs if run.get("teacher")]
    teacher = {key: mean_std([t[key] for t in teachers])[0] for key in ("accuracy", "val_accuracy")} if teachers \
        else {}
    if teachers:
        teacher["params"] = teachers[0]["params"]
    base = config.distill
    return {"experiment": NAME, "rows": rows, "runs": runs, "teacher": teacher, "curves": curves(rows),
            "best_on_validation": best_on_validation(rows), "hurt_on_validation": hurt_on_validation(rows),
            "fixed": {"width_subset": fixed_subset(config), "data_width": fixed_width(config)},
            "dataset": base.dataset}


def _cell(row: dict) -> str:
    images = f"all {row['n_train']} images" if row["train_subset"] == 0 else f"{row['n_train']} images"
    return f"width {row['width']} ({row['params']:,} parameters) on {images}"


def _points(value: float) -> str:
    return f"{100 * value:+.2f}"


def verdict(rows: list[dict]) -> str:
    """Plain sentences from the summary rows: where KD helped most on validation and its test gain there, where it
    hurt on validation (and its test change there), and where test alone says it was worse."""
    if not rows:
        return "No cell was measured."
    n = rows[0]["n_seeds"]
    means = "" if n == 1 else f" (means over {n} seeds)"
    best = best_on_validation(rows)

    def wins(row, split):
        return "" if n == 1 else f", KD better on {row[f'kd_{split}wins']} of {n} seeds"

    if best["val_gain"] > 0:
        lines = [f"On validation{means} KD helped most at {_cell(best)}: {_points(best['val_gain'])} points "
                 f"({100 * best['hard_val_accuracy']:.2f} → {100 * best['kd_val_accuracy']:.2f} %"
                 f"{wins(best, 'val_')}); on test there {_points(best['gain'])} points "
                 f"({100 * best['hard_accuracy']:.2f} → {100 * best['kd_accuracy']:.2f} %{wins(best, '')})."]
    else:
        lines = [f"On validation{means} KD helped nowhere; its smallest loss was at {_cell(best)} "
                 f"({_points(best['val_gain'])} points; test {_points(best['gain'])})."]
    hurt = hurt_on_validation(rows)
    if hurt:
        lines.append("KD hurt on validation at " + "; ".join(
            f"{_cell(r)} ({_points(r['val_gain'])} points, test {_points(r['gain'])})" for r in hurt) + ".")
    else:
        lines.append("KD hurt nowhere on validation.")
    test_only = [r for r in rows if r["gain"] < 0 <= r["val_gain"]]
    if test_only:
        lines.append("On test alone KD was also worse at " + "; ".join(
            f"{_cell(r)} ({_points(r['gain'])} points)" for r in test_only) + ".")
    return " ".join(lines)


def format_text(result: dict) -> str:
    rows = result["rows"]
    n = rows[0]["n_seeds"] if rows else 1

    def acc(row, key):
        return f"{100 * row[key]:.2f}" + (f"±{100 * row[key + '_std']:.2f}" if n > 1 else "")

    def gain(row, key):
        return f"{100 * row[key]:+.2f}" + (f"±{100 * row[key + '_std']:.2f}" if n > 1 else "")

    w = 13 if n > 1 else 7
    lines = [f"{'curve':<10} {'width':>5} {'images':>6} {'params':>8} {'hard val':>{w}} {'KD val':>{w}} "
             f"{'KD−hard val':>{w}} {'hard test':>{w}} {'KD test':>{w}} {'KD−hard test':>{w}} "
             f"{'KD wins val/test':>16}"]
    for row in rows:
        curve, wins = "+".join(row["curves"]), f"{row['kd_val_wins']}/{row['kd_wins']} of {n}"
        images = "all" if row["train_subset"] == 0 else str(row["n_train"])
        lines.append(f"{curve:<10} {row['width']:>5} {images:>6} {row['params']:>8,} "
                     f"{acc(row, 'hard_val_accuracy'):>{w}} {acc(row, 'kd_val_accuracy'):>{w}} "
                     f"{gain(row, 'val_gain'):>{w}} {acc(row, 'hard_accuracy'):>{w}} {acc(row, 'kd_accuracy'):>{w}} "
                     f"{gain(row, 'gain'):>{w}} {wins:>16}")
    teacher = result.get("teacher") or {}
    if teacher:
        lines.append(f"teacher: {teacher['params']:,} parameters, {100 * teacher['val_accuracy']:.2f} % validation, "
                     f"{100 * teacher['accuracy']:.2f} % test")
    lines.append(verdict(rows))
    lines.append("Accuracies in %; the marks are chosen on validation, test is only reported.")
    return "\n".join(lines)
