"""requirements-lock.txt (what `make test` installs, .ci/install-locked) stays in step with the pins a person edits:
every package pinned in requirements.txt and requirements-dev.txt is in the lock at the same version, and the lock
pins exact versions only, each package once."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)")


def pins(name: str) -> list[tuple[str, str]]:
    found = []
    for line in (ROOT / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-r")):
            continue
        match = PIN.match(line)
        assert match, f"{name}: not an exact pin: {line!r}"
        found.append((re.sub(r"[-_.]+", "-", match[1].split("[")[0]).lower(), match[2]))
    return found


def test_the_lock_pins_every_requirement_at_its_version_and_nothing_twice():
    lock = pins("requirements-lock.txt")
    names = [name for name, _ in lock]
    assert len(names) == len(set(names)), "a package pinned twice in requirements-lock.txt"
    locked = dict(lock)
    for requirements in ("requirements.txt", "requirements-dev.txt"):
        for name, version in pins(requirements):
            assert locked.get(name) == version, f"{requirements} pins {name}=={version}, the lock has " \
                                                f"{locked.get(name)}: regenerate requirements-lock.txt"

