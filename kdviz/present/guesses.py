"""Followers' guesses at a presentation's questions: one per follower per question, anonymous, bounded in memory."""
from __future__ import annotations

import collections
import math
import numbers

MAX_GUESS_TEXT = 40  # a choice such as "cat" or "yes": anything longer is not an answer to a tour question


class TooManyGuesses(ValueError):
    """A question already holds as many followers' guesses as a presentation keeps; the message says how many."""


class PresenterCannotGuess(ValueError):
    """The lecturer tried to guess at their own question (they know the answer, and it would skew the histogram)."""


def check_guess(value) -> float | str:
    """A guess as the hub keeps it: a finite number (as a float) or a short line of text; ValueError naming it."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number):
            return number
    elif isinstance(value, str):
        text = value.strip()
        if text and len(text) <= MAX_GUESS_TEXT and text.isprintable():
            return text
    raise ValueError(f"a guess must be a finite number or a text of 1 to {MAX_GUESS_TEXT} printable characters, "
                     f"got {shown(value)}")


class GuessBook:
    """One presentation's guesses: question → {follower key → value}, plus the questions whose answer is revealed.

    Callers validate (the hub checks question ids, values and who may guess); the book enforces what it alone can
    see: one guess per follower (a new one replaces the old), none after the reveal, at most max_per_question
    followers per question, and at most max_questions questions (the least recently asked one is forgotten first, so
    a long lecture never grows without bound)."""

    def __init__(self, max_per_question: int, max_questions: int):
        self.max_per_question, self.max_questions = max_per_question, max_questions
        self._by_question: collections.OrderedDict[str, dict[str, float | str]] = collections.OrderedDict()
        self._revealed: set[str] = set()

    def ask(self, question: str) -> bool:
        """Opens (or reopens) a question; returns whether its answer was already revealed (it then stays revealed:
        the hall has seen it, so guessing again would mean nothing)."""
        self._by_question.setdefault(question, {})
        self._by_question.move_to_end(question)
        while len(self._by_question) > self.max_questions:
            forgotten, _ = self._by_question.popitem(last=False)
            self._revealed.discard(forgotten)
        return question in self._revealed

    def reveal(self, question: str) -> None:
        self._revealed.add(question)

    def add(self, question: str, follower: str, value: float | str) -> None:
        """Records (or replaces) one follower's guess at an asked question; ValueError after the reveal or at the
        cap (a follower who already guessed may still change their guess at the cap)."""
        if question in self._revealed:
            raise ValueError("the answer is already revealed: guesses are closed for this question")
        guesses = self._by_question[question]
        if follower not in guesses and len(guesses) >= self.max_per_question:
            raise TooManyGuesses(f"question {question} already has {len(guesses)} guesses, the most a presentation "
                                 "keeps per question; yours was not counted")
        guesses[follower] = value

    def values(self, question: str) -> list[float | str]:
        """The guesses at a question, without who made them (in the order followers first guessed)."""
        return list(self._by_question.get(question, {}).values())

    def of(self, question: str, follower: str) -> float | str | None:
        return self._by_question.get(question, {}).get(follower)

    def to_dict(self) -> dict:
        """JSON types only (for a store shared by several servers; it holds follower keys, so never send it out)."""
        return {"guesses": {question: dict(guesses) for question, guesses in self._by_question.items()},
                "revealed": sorted(self._revealed)}

    @classmethod
    def from_dict(cls, data: dict, max_per_question: int, max_questions: int) -> GuessBook:
        book = cls(max_per_question, max_questions)
        for question, guesses in data["guesses"].items():
            book._by_question[question] = dict(guesses)
        book._revealed = set(data["revealed"])
        return book


def shown(value) -> str:
    """A value for an error message, cut short (guesses and codes come from anyone's browser)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
