"""Where kdviz keeps what it makes: KDVIZ_HOME (default ~/.cache/kdviz) with teachers/, runs/ and data/."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("KDVIZ_HOME") or Path.home() / ".cache" / "kdviz")


def data_dir() -> Path:
    return home() / "data"


def teachers_dir() -> Path:
    return home() / "teachers"


def runs_dir() -> Path:
    return home() / "runs"


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write to a temp file in the same folder, then os.replace: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
