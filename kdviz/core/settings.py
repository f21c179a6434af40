"""The server's settings as the operator writes them, torch-free (a page that only reads a setting, e.g. the identity
cap, must not import torch): each is read from an environment variable first (KDVIZ_ + its name in upper case), then
from the [server] table of KDVIZ_HOME/server.toml, else its default; kdviz.runs.settings.server_settings builds the
run service's ServerSettings from them (the table of what each means is in its module docstring, and `kdviz settings`
prints the values in force and where each came from)."""
from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path

from kdviz.core.paths import home


# name (lower case, as in server.toml) → (kind, default). Kinds: limits may be "none"/0; counts are integers ≥ 1.
SETTINGS: dict[str, tuple[str, object]] = {
    "max_run_memory_mb": ("limit", 2048),
    "max_run_tflop": ("limit", 1000),
    "max_run_steps": ("integer limit", 100_000),
    "max_run_seconds": ("limit", 900),
    "workers": ("count", 1),
    "max_runs_per_browser": ("count", 12),
    "max_runs_per_address": ("count", 24),
    "max_queued": ("count", 64),
    "paused_timeout_s": ("seconds", 600),
    "executor": ("executor", "threads"),
    "ray_address": ("text", ""),
    "ray_connect_timeout_s": ("seconds", 30),
    "max_identities_per_address": ("integer limit", 24),
    "trusted_proxies": ("networks", ""),
    "max_disk_mb": ("limit", 20480),
    "max_disk_per_browser_mb": ("limit", 2048),
    "max_paused": ("count", 4),
    "server_memory_mb": ("limit", "none"),
}


def settings_file() -> Path:
    return home() / "server.toml"


def setting_values() -> dict[str, tuple[object, str]]:
    """Each setting's parsed value and where it came from ("KDVIZ_X", "server.toml" or "default"): what
    server_settings builds on, and what `kdviz settings` prints. ValueError naming the setting and its bad value."""
    from_file = _read_settings_file(settings_file())
    values = {}
    for name, (kind, default) in SETTINGS.items():
        variable = f"KDVIZ_{name.upper()}"
        raw = os.environ.get(variable, "").strip()
        if raw:
            values[name] = (_parse(raw, kind, variable), variable)
        elif name in from_file:
            values[name] = (_parse(from_file[name], kind, f"{settings_file()} [server] {name}"), "server.toml")
        else:
            values[name] = (_parse(default, kind, name), "default")
    return values


def setting(name: str):
    """One setting's value in force (what a part below the run service reads, e.g. the Ray connect time-out)."""
    return setting_values()[name][0]


def _read_settings_file(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid TOML ({error})") from None
    table = document.get("server", {})
    if not isinstance(table, dict):
        raise ValueError(f"{path}: [server] must be a table of settings, got {table!r}")
    unknown = sorted(set(table) - set(SETTINGS))
    if unknown:
        raise ValueError(f"{path} [server]: unknown setting {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(SETTINGS)}")
    return table


def _parse(raw, kind: str, where: str) -> float | int | None:
    """A setting's value from an environment string or a TOML value; ValueError naming where and the value."""
    if kind in ("text", "networks"):
        if not isinstance(raw, str):
            raise ValueError(f"{where} must be a string, got {raw!r}")
        if kind == "networks":  # IP addresses or networks: checked here, read by kdviz.core.identity
            from kdviz.core.identity import parse_trusted_proxies

            try:
                parse_trusted_proxies(raw)
            except ValueError as error:
                raise ValueError(f"{where}: {str(error).removeprefix('trusted_proxies: ')}") from None
        return raw.strip()
    if kind == "executor":
        if raw not in ("threads", "ray"):
            raise ValueError(f'{where} must be "threads" or "ray", got {raw!r}')
        return raw
    limit = kind in ("limit", "integer limit")
    if limit and isinstance(raw, str) and raw.strip().lower() == "none":
        return None
    value: float | None = None
    if isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            pass
    elif type(raw) in (int, float):  # not bool: `workers = true` is a mistake
        value = float(raw)
    if limit and value == 0:
        return None
    if value is None or not math.isfinite(value) or value <= 0 or \
            (kind in ("integer limit", "count") and value != int(value)):
        want = {"limit": 'a number > 0, or "none" (or 0) for no limit',
                "integer limit": 'an integer > 0, or "none" (or 0) for no limit',
                "count": "an integer >= 1", "seconds": "a number of seconds > 0"}[kind]
        raise ValueError(f"{where} must be {want}, got {raw!r}")
    return int(value) if kind in ("integer limit", "count") else value
