"""Presentations a lecture hall follows: rooms moved only by their lecturer, polled by followers, with guesses."""
from kdviz.present.guesses import GuessBook, PresenterCannotGuess, TooManyGuesses, check_guess
from kdviz.present.records import CODE_ALPHABET, CODE_LENGTH, Poll, Presentation, View, normalize_code
from kdviz.present.rooms import (
    Hub,
    HubSettings,
    NoSuchPresentation,
    NotPresenter,
    PresentationEnded,
    TooManyPresentations,
    hub,
    hub_made,
    reset_hub,
    settings_from_environment,
)

__all__ = [
    "CODE_ALPHABET", "CODE_LENGTH", "GuessBook", "Hub", "HubSettings", "NoSuchPresentation", "NotPresenter", "Poll",
    "Presentation", "PresentationEnded", "PresenterCannotGuess", "TooManyGuesses", "TooManyPresentations", "View",
    "check_guess", "hub", "hub_made", "normalize_code", "reset_hub", "settings_from_environment",
]
