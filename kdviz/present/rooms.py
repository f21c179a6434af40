"""Presentations a lecture hall follows: the process-wide hub of rooms, each one moved only by its lecturer.

A lecturer starts a presentation and gets a room code; the hall follows it by that code (a follow link carries the
code, never control). Every mutating call takes the caller's identity and refuses anyone but the presenter with
NotPresenter; the hub stores only kdviz.core.identity.owner_key(identity). Followers poll a version number, cheaply,
and rerun only when it changed; guesses bump a separate guess_version that only the lecturer's histogram polls.
A presentation ends when its lecturer ends it, or by itself after idle_timeout_s without a presenter's call or after
max_lifetime_s; expiry is checked lazily on access (and by expire()), against an injectable clock. The state is small
and serialisable (Presentation.to_dict, GuessBook.to_dict), so it could move to a store several servers share.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import numbers
import os
import threading
import time
from collections.abc import Callable

from kdviz.core.identity import owner_key
from kdviz.present.guesses import GuessBook, PresenterCannotGuess, check_guess, shown
from kdviz.present.records import Poll, Presentation, View, check_identifier, normalize_code, random_code

_KEEP = object()  # move()'s "leave this as it is" (None is a value: run_id=None stops showing a run)


class NotPresenter(PermissionError):
    """Someone other than the lecturer tried to change a presentation; they can follow it, not move it."""


class TooManyPresentations(ValueError):
    """The server already runs as many presentations as it allows; the message says how many."""


class NoSuchPresentation(LookupError, ValueError):
    """No presentation has this code (or it ended too long ago to be remembered). Also a ValueError, so that a form
    that shows a refused guess's message (`except ValueError`) shows this one too."""


class PresentationEnded(LookupError, ValueError):
    """The presentation has ended; the message says why (a ValueError too, as NoSuchPresentation)."""


@dataclasses.dataclass(frozen=True)
class HubSettings:
    """The hub's limits (the operator's: see hub() for the environment variables)."""

    idle_timeout_s: float = 2 * 3600.0
    max_lifetime_s: float = 10 * 3600.0
    max_rooms: int = 64
    max_guesses_per_question: int = 2000
    max_questions: int = 64  # per presentation (the tour asks 4)
    remembered_ended: int = 1024  # ended codes kept, so their links say "ended" rather than "no such presentation"

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = check_setting(getattr(self, field.name), field.name, integer=field.type == "int")
            object.__setattr__(self, field.name, value)


class _Room:
    """A live presentation as the hub keeps it: the current snapshot, its guesses and when it expires."""

    __slots__ = ("presentation", "guesses", "deadline", "deadline_reason")

    def __init__(self, presentation: Presentation, guesses: GuessBook):
        self.presentation, self.guesses = presentation, guesses
        self.deadline, self.deadline_reason = math.inf, ""


class Hub:
    """Process-wide: the live presentations (at most settings.max_rooms, one per lecturer) and the last ended ones.

    One lock guards everything; nothing under it does I/O or more than a dict lookup and a few comparisons (poll),
    because Streamlit script threads and the async follow route both call in. clock (time.time) and new_code
    (random_code) are injectable, so tests neither sleep nor depend on chance."""

    def __init__(self, settings: HubSettings | None = None, *, clock: Callable[[], float] = time.time,
                 new_code: Callable[[], str] | None = None, **overrides):
        self.settings = dataclasses.replace(settings or HubSettings(), **overrides)
        self._clock, self._new_code = clock, new_code or random_code
        self._lock = threading.Lock()
        self._rooms: dict[str, _Room] = {}
        self._by_presenter: dict[str, str] = {}  # presenter key → code: one live presentation per lecturer
        self._ended: collections.OrderedDict[str, Presentation] = collections.OrderedDict()  # an LRU

    # -- the lecturer's side --
    def start(self, identity: str, view: View | None = None) -> Presentation:
        """Starts a presentation of `view` (default View()), or returns the caller's live one (a reload)."""
        key, view, now = _presenter_key(identity), View() if view is None else view, self._clock()
        if not isinstance(view, View):
            raise ValueError(f"view must be a View, got {view!r}")
        with self._lock:
            self._sweep(now)
            code = self._by_presenter.get(key)
            if code is not None:  # starting again counts as the lecturer being there: it refreshes the time-out
                return self._apply(self._rooms[code], self._rooms[code].presentation.view, now)
            if len(self._rooms) >= self.settings.max_rooms:
                raise TooManyPresentations(f"{len(self._rooms)} presentations are running, the most this server "
                                           "allows; end one or wait for one to time out, then start again")
            presentation = Presentation(self._free_code(), key, view, 1, 0, now, now)
            room = _Room(presentation, GuessBook(self.settings.max_guesses_per_question, self.settings.max_questions))
            self._rooms[presentation.code], self._by_presenter[key] = room, presentation.code
            return self._apply(room, view, now)

    def presenting(self, identity: str | None) -> Presentation | None:
        """The live presentation this identity presents, if any (what a lecturer's reloaded page picks up again)."""
        if not identity:
            return None
        key, now = owner_key(identity), self._clock()
        with self._lock:
            presentation = self._current(self._by_presenter.get(key), now)
        return presentation if presentation is not None and presentation.live else None  # it may just have timed out

    def move(self, code: str, identity: str, *, step=_KEEP, temperature=_KEEP, alpha=_KEEP,
             run_id=_KEEP) -> Presentation:
        """Changes the step, T, α or the run shown (the arguments given); the open question stays as it is."""
        changes = {name: value for name, value in (("step", step), ("temperature", temperature), ("alpha", alpha),
                                                   ("run_id", run_id)) if value is not _KEEP}
        return self._update(code, identity, lambda room: dataclasses.replace(room.presentation.view, **changes))

    def ask(self, code: str, identity: str, question: str | None) -> Presentation:
        """Opens a question (None closes it). A question revealed earlier reopens revealed: the hall has seen it."""
        question = check_identifier(question, "question")

        def asked(room: _Room) -> View:
            revealed = question is not None and room.guesses.ask(question)
            return dataclasses.replace(room.presentation.view, question=question, revealed=revealed)
        return self._update(code, identity, asked)

    def reveal(self, code: str, identity: str) -> Presentation:
        """Shows the open question's answer; from now on its guesses are closed."""
        def revealed(room: _Room) -> View:
            view = room.presentation.view
            if view.question is None:
                raise ValueError("no question is open, so there is no answer to reveal: ask one first")
            room.guesses.reveal(view.question)
            return dataclasses.replace(view, revealed=True)
        return self._update(code, identity, revealed)

    def end(self, code: str, identity: str) -> Presentation:
        """Ends the presentation (its guesses are dropped; its code is remembered as ended). Ending it twice is
        harmless."""
        key, now = owner_key(identity) if identity else None, self._clock()
        with self._lock:
            presentation = self._current(normalize_code(code), now)
            if presentation is None:
                raise NoSuchPresentation(_no_such(code))
            if presentation.presenter_key != key:
                raise NotPresenter(_not_presenter(presentation.code))
            if not presentation.live:
                return presentation
            return self._finish(self._rooms[presentation.code], now, "the lecturer ended it")

    # -- the hall's side --
    def get(self, code) -> Presentation | None:
        """The presentation with this code, live or remembered as ended; None for a malformed or unknown code."""
        now = self._clock()
        with self._lock:
            return self._current(normalize_code(code), now)

    def poll(self, code, since_version: int | None = None) -> Poll:
        """What a follower polls every second: O(1), the lock held for a dict lookup and one comparison."""
        key = normalize_code(code)
        if key is None:
            return Poll.of(None, since_version)
        now = self._clock()
        with self._lock:
            presentation = self._current(key, now)
        return Poll.of(presentation, since_version)

    def poll_dict(self, code, since_version: int | None = None) -> dict:
        """poll() as JSON types, for the follow route."""
        return self.poll(code, since_version).to_dict()

    def guess(self, code: str, identity: str, question: str, value) -> float | str:
        """Records a follower's guess at the open question (replacing their earlier one) and returns it as kept."""
        question, value = check_identifier(question, "question"), check_guess(value)
        if question is None:
            raise ValueError("a guess needs the question it answers")
        if not identity:
            raise ValueError("a guess needs the follower's identity (this browser's cookie)")
        key, now = owner_key(identity), self._clock()
        with self._lock:
            room = self._live_room(code, now)
            presentation = room.presentation
            if key == presentation.presenter_key:
                raise PresenterCannotGuess("you are presenting this: the lecturer knows the answer, so only the "
                                           "hall guesses (open the follow link on another device to try it)")
            if presentation.view.question != question:
                raise ValueError(f"question {question} is not open (the lecturer's open question is "
                                 f"{presentation.view.question or 'none'}); your guess was not counted")
            room.guesses.add(question, key, value)
            room.presentation = dataclasses.replace(presentation, guess_version=presentation.guess_version + 1)
            return value

    def guesses(self, code, question: str) -> list[float | str]:
        """The guesses at a question, anonymous (values only); [] once the presentation is over."""
        question, now = check_identifier(question, "question"), self._clock()
        with self._lock:
            room = self._rooms.get(normalize_code(code) or "")
            if room is None or self._expire_if_due(room, now):
                return []
            return room.guesses.values(question)

    def my_guess(self, code, identity: str | None, question: str) -> float | str | None:
        """This follower's own guess at a question, if any."""
        question, now = check_identifier(question, "question"), self._clock()
        if not identity:
            return None
        key = owner_key(identity)
        with self._lock:
            room = self._rooms.get(normalize_code(code) or "")
            if room is None or self._expire_if_due(room, now):
                return None
            return room.guesses.of(question, key)

    def expire(self) -> list[str]:
        """Ends every presentation whose time is up; returns their codes."""
        now = self._clock()
        with self._lock:
            return self._sweep(now)

    # -- under the lock --
    def _update(self, code, identity, make_view: Callable[[_Room], View]) -> Presentation:
        key, now = owner_key(identity) if identity else None, self._clock()
        with self._lock:
            room = self._live_room(code, now)
            if room.presentation.presenter_key != key:
                raise NotPresenter(_not_presenter(room.presentation.code))
            return self._apply(room, make_view(room), now)

    def _apply(self, room: _Room, view: View, now: float) -> Presentation:
        """Any accepted call of the lecturer's refreshes the idle time-out; only a different view bumps version."""
        presentation = room.presentation
        changed = view != presentation.view
        room.presentation = dataclasses.replace(presentation, view=view, version=presentation.version + changed,
                                                last_change=now)
        idle, lifetime = now + self.settings.idle_timeout_s, presentation.created + self.settings.max_lifetime_s
        if idle <= lifetime:
            room.deadline = idle
            room.deadline_reason = f"it timed out after {_duration(self.settings.idle_timeout_s)} without a change"
        else:
            room.deadline = lifetime
            room.deadline_reason = f"it ran for {_duration(self.settings.max_lifetime_s)}, the longest one may run"
        return room.presentation

    def _current(self, code: str | None, now: float) -> Presentation | None:
        room = self._rooms.get(code)
        if room is not None and not self._expire_if_due(room, now):
            return room.presentation
        ended = self._ended.get(code)
        if ended is not None:
            self._ended.move_to_end(code)  # a link people still open is the one worth remembering
        return ended

    def _live_room(self, code, now: float) -> _Room:
        presentation = self._current(normalize_code(code), now)
        if presentation is None:
            raise NoSuchPresentation(_no_such(code))
        if not presentation.live:
            raise PresentationEnded(f"presentation {presentation.code} has ended: {presentation.end_reason}")
        return self._rooms[presentation.code]

    def _expire_if_due(self, room: _Room, now: float) -> bool:
        if now < room.deadline:
            return False
        self._finish(room, room.deadline, room.deadline_reason)
        return True

    def _sweep(self, now: float) -> list[str]:
        return [room.presentation.code for room in list(self._rooms.values()) if self._expire_if_due(room, now)]

    def _finish(self, room: _Room, ended_at: float, reason: str) -> Presentation:
        """Ends a live presentation: forgets its guesses and remembers its code (the end is a change: version + 1)."""
        presentation = room.presentation
        ended = dataclasses.replace(presentation, version=presentation.version + 1, ended_at=ended_at,
                                    end_reason=reason)
        del self._rooms[presentation.code]
        del self._by_presenter[presentation.presenter_key]
        self._ended[presentation.code] = ended
        while len(self._ended) > self.settings.remembered_ended:
            self._ended.popitem(last=False)
        return ended

    def _free_code(self) -> str:
        for _ in range(1000):
            code = self._new_code()
            if code not in self._rooms and code not in self._ended:
                return code
        raise RuntimeError("could not draw a free room code in 1000 tries; the code source repeats itself")


# -- the process's hub --
ENVIRONMENT = {"KDVIZ_PRESENT_IDLE_TIMEOUT_S": "idle_timeout_s", "KDVIZ_PRESENT_MAX_ROOMS": "max_rooms"}
_HUB: Hub | None = None
_HUB_LOCK = threading.Lock()


HUB_VARIABLE = "KDVIZ_PRESENT_HUB"  # "process" (default): this process's memory; "ray": one actor every replica shares


def hub() -> Hub:
    """This process's hub, made on first use with settings_from_environment() (the follow route and every page
    share it: it is not a Streamlit cache, so code outside a script run reaches it too). With KDVIZ_PRESENT_HUB=ray
    it is the hall's shared hub (kdviz.present.remote), on the Ray cluster of the server's settings."""
    global _HUB
    if _HUB is None:  # the lock only for the first call, not for every poll
        with _HUB_LOCK:
            if _HUB is None:
                _HUB = _make_hub(settings_from_environment())
    return _HUB


def hub_made() -> bool:
    """Whether hub() has been made (making the shared one connects to Ray: callers on an event loop do it in a
    thread)."""
    return _HUB is not None


def _make_hub(settings: HubSettings):
    kind = os.environ.get(HUB_VARIABLE, "process").strip() or "process"
    if kind == "process":
        return Hub(settings)
    if kind != "ray":
        raise ValueError(f"{HUB_VARIABLE} must be process or ray, got {kind!r}")
    from kdviz.core.settings import setting
    from kdviz.present.remote import RayHub

    return RayHub(settings, setting("ray_address") or None)


def reset_hub() -> None:
    """Forgets this process's hub (tests; hub() then reads the environment again)."""
    global _HUB
    with _HUB_LOCK:
        _HUB = None


def settings_from_environment(environ=None) -> HubSettings:
    """HubSettings with the operator's overrides: KDVIZ_PRESENT_IDLE_TIMEOUT_S (seconds) and KDVIZ_PRESENT_MAX_ROOMS;
    ValueError naming the variable and its value."""
    environ = os.environ if environ is None else environ
    values = {}
    for variable, name in ENVIRONMENT.items():
        raw = environ.get(variable, "").strip()
        if raw:
            values[name] = check_setting(raw, variable, integer=name == "max_rooms")
    return HubSettings(**values)


# -- checks at the boundary --
def check_setting(value, name: str, integer: bool = False) -> int | float:
    """A limit: a finite number > 0 (an integer >= 1 when integer), from a number or an environment string."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if not (isinstance(number, numbers.Real) and not isinstance(number, bool) and math.isfinite(number)
            and number > 0 and (not integer or number == int(number))):
        raise ValueError(f"{name} must be {'an integer >= 1' if integer else 'a number > 0'}, got {value!r}")
    return int(number) if integer else float(number)


def _presenter_key(identity) -> str:
    if not isinstance(identity, str) or not identity:
        raise ValueError("presenting needs this browser's identity (its cookie); reload the page and try again")
    return owner_key(identity)


def _not_presenter(code: str) -> str:
    return f"only the lecturer who started presentation {code} can change it; you are following it"


def _no_such(code) -> str:
    return f"there is no presentation {normalize_code(code) or shown(code)}: check the code on the lecturer's screen"


def _duration(seconds: float) -> str:
    """2 h, 90 min, 45 s: a time-out as a person says it."""
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"
