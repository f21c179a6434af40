"""What a presentation is, without the hub: its room code, the view every follower sees, the snapshot the hub
replaces on each change, and the poll a follower's browser receives; with the checks at their boundary."""
from __future__ import annotations

import dataclasses
import math
import numbers
import re
import secrets
from typing import NamedTuple

from kdviz.core.identity import owner_key
from kdviz.present.guesses import shown

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I/L: read off a projector, typed on a phone
CODE_LENGTH = 5  # 31**5 ≈ 29 million codes: a random one is free at the first draw, almost always
_CODE = re.compile(f"[{CODE_ALPHABET}]{{{CODE_LENGTH}}}")
_IDENTIFIER = re.compile(r"[a-z0-9_-]{1,40}")
MAX_STEP = 999


@dataclasses.dataclass(frozen=True)
class View:
    """What every follower sees: the tour's step, T, α, the open question, whether its answer is shown, and a run the
    lecturer shows. The hub checks only types and ranges (kdviz.views.tour knows what steps and questions mean)."""

    step: int = 1
    temperature: float = 1.0
    alpha: float = 0.9
    question: str | None = None
    revealed: bool = False
    run_id: str | None = None

    def __post_init__(self):
        if not isinstance(self.step, numbers.Integral) or isinstance(self.step, bool) or not 1 <= self.step <= MAX_STEP:
            raise ValueError(f"step must be an integer from 1 to {MAX_STEP}, got {self.step!r}")
        temperature, alpha = _finite(self.temperature, "temperature"), _finite(self.alpha, "alpha")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be from 0 to 1, got {self.alpha!r}")
        if not isinstance(self.revealed, bool):
            raise ValueError(f"revealed must be True or False, got {self.revealed!r}")
        if self.revealed and self.question is None:
            raise ValueError("revealed needs an open question: there is no answer to show")
        for name, value in (("step", int(self.step)), ("temperature", temperature), ("alpha", alpha),
                            ("question", check_identifier(self.question, "question")),
                            ("run_id", check_identifier(self.run_id, "run_id"))):
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        return {"step": self.step, "temperature": self.temperature, "alpha": self.alpha, "question": self.question,
                "revealed": self.revealed, "run_id": self.run_id}


@dataclasses.dataclass(frozen=True)
class Presentation:
    """A snapshot of one presentation (the hub replaces it on every change, so a reader never sees it half-made).

    version counts changes of the view (and the end); guess_version counts accepted guesses. presenter_key is a hash
    of the lecturer's identity: to_dict() is for storage, never for followers (they get poll_dict())."""

    code: str
    presenter_key: str
    view: View
    version: int
    guess_version: int
    created: float
    last_change: float
    ended_at: float | None = None
    end_reason: str | None = None

    @property
    def live(self) -> bool:
        return self.ended_at is None

    def presented_by(self, identity: str | None) -> bool:
        """Whether identity (a browser's secret) is this presentation's lecturer."""
        return bool(identity) and owner_key(identity) == self.presenter_key

    def to_dict(self) -> dict:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)} | {
            "view": self.view.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Presentation:
        return cls(**(data | {"view": View(**data["view"])}))


class Poll(NamedTuple):
    """What a follower's browser learns each second: the state ("live" | "ended" | "unknown"), the version, whether
    it differs from the one the browser has (changed: rerun), the view only when live and changed (a poll that finds
    nothing new carries nothing else), and why it ended. A named tuple: frozen, and made in a fraction of the time
    a frozen dataclass takes (hundreds of followers poll every second)."""

    state: str
    version: int
    changed: bool
    view: dict | None = None
    end_reason: str | None = None

    @classmethod
    def of(cls, presentation: Presentation | None, since_version) -> Poll:
        if presentation is None:
            return cls("unknown", 0, since_version != 0)
        changed = presentation.version != since_version
        if not presentation.live:
            return cls("ended", presentation.version, changed, None, presentation.end_reason)
        return cls("live", presentation.version, changed, presentation.view.to_dict() if changed else None)

    def to_dict(self) -> dict:
        """JSON types only: what the follow route returns."""
        return {"state": self.state, "version": self.version, "changed": self.changed, "view": self.view,
                "end_reason": self.end_reason}


def check_identifier(value, name: str) -> str | None:
    """None, or a short id of lower-case letters, digits, '-' and '_' (a question's or a run's)."""
    if value is None or (isinstance(value, str) and _IDENTIFIER.fullmatch(value)):
        return value
    raise ValueError(f"{name} must be None or 1 to 40 characters of a-z, 0-9, '-' and '_', got {shown(value)}")


def normalize_code(code) -> str | None:
    """A room code as typed (any case, spaces anywhere) → its canonical form; None for anything that is not one."""
    if not isinstance(code, str) or len(code) > 4 * CODE_LENGTH:  # never work through a long string from a URL
        return None
    if _CODE.fullmatch(code):  # as links and the follow route send it: the poll's fast path
        return code
    code = "".join(code.split()).upper()
    return code if _CODE.fullmatch(code) else None


def random_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def _finite(value, name: str) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError(f"{name} must be a finite number, got {shown(value)}")
