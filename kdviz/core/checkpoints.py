"""A run's folder and its saved students (KDVIZ_HOME/runs/<id>/config.json, students.pt): the one format, written by
the run service (kdviz.runs) and read by the experiments and the views, so that nothing reads the run service."""
from __future__ import annotations

import io
import json
from pathlib import Path

from kdviz.core.paths import runs_dir
from kdviz.core.roles import STUDENTS


def is_valid_run_id(run_id: str) -> bool:
    """Run ids come from URLs: only our own shape is accepted, so no path can escape the runs folder."""
    parts = str(run_id).split("-")
    return (len(parts) == 3 and parts[0].isdigit() and len(parts[0]) == 8 and parts[1].isdigit()
            and len(parts[1]) == 6 and len(parts[2]) == 6 and all(c in "0123456789abcdef" for c in parts[2]))


def run_folder(run_id: str, root: Path | None = None) -> Path:
    """The run's folder under root (default KDVIZ_HOME/runs); ValueError for anything but a run id."""
    if not is_valid_run_id(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    return (Path(root) if root is not None else runs_dir()) / run_id


def students_path(run_id: str, root: Path | None = None) -> Path:
    return run_folder(run_id, root) / "students.pt"


def read_run_config(run_id: str, root: Path | None = None) -> dict | None:
    """The config a run recorded (config.json's "config": a DistillConfig's or an experiment's dict), or None."""
    try:
        record = json.loads((run_folder(run_id, root) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    config = record.get("config") if isinstance(record, dict) else None
    return config if isinstance(config, dict) else None


def students_bytes(config: dict, models: dict) -> bytes:
    """students.pt's content: the run's recorded config and each student's state dict ({"hard": model, "kd": ...})."""
    import torch

    buffer = io.BytesIO()
    torch.save({"config": config, **{f"{name}_state_dict": model.state_dict() for name, model in models.items()}},
               buffer)
    return buffer.getvalue()


def load_students(path: Path):
    """The trained hard-label and KD students saved at path: (DistillConfig, {"hard": model, "kd": model})."""
    import torch

    from kdviz.core.data import load_dataset
    from kdviz.core.engine import config_from_dict
    from kdviz.core.models import create_model

    record = torch.load(path, map_location="cpu", weights_only=True)
    config = config_from_dict(record["config"])
    dataset = load_dataset(config.dataset)
    models = {}
    for name in STUDENTS:
        model = create_model(config.student, dataset.input_shape, dataset.num_classes)
        model.load_state_dict(record[f"{name}_state_dict"])
        models[name] = model.eval()
    return config, models
