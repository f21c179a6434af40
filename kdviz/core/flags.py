"""Command-line flags declared where a config's fields are: `flag(default, "--name", "help")` is a dataclass field whose
metadata names its flag, and add_flags / given_flags turn a config class into argparse options and the options a user
gave back into field values. A new field gets its flag on the line that declares it."""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass

PREFIX = "field:"  # config fields' argparse dests, apart from the CLI's (an experiment's `epochs` is not --epochs)


@dataclass(frozen=True)
class Flag:
    """How a field is set from the command line. help may say "{default}": the value in the config --help is drawn
    from (an experiment's default config). A bool field that is True by default gets a flag that turns it off."""

    name: str
    help: str
    metavar: str | None = None
    choices: tuple = ()


def flag(default, name: str, help: str, metavar: str | None = None, choices=()) -> typing.Any:
    """A dataclass field with a command-line flag, e.g. `omitted: int = flag(3, "--omitted", "...", "CLASS")`."""
    return dataclasses.field(default=default, metadata={"flag": Flag(name, help, metavar, tuple(choices))})


def flagged_fields(config_type) -> list[tuple[str, Flag, type, bool]]:
    """(field name, its Flag, the type of one value, whether it takes several) of each flagged field, in order."""
    hints = typing.get_type_hints(config_type)
    found = []
    for field in dataclasses.fields(config_type):
        if "flag" not in field.metadata:
            continue
        kind, several = hints[field.name], False
        if typing.get_origin(kind) in (types.UnionType, typing.Union):  # `int | None`: an int (None: not given)
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        if typing.get_origin(kind) is tuple:  # `tuple[int, ...]`: one or more ints
            kind, several = typing.get_args(kind)[0], True
        found.append((field.name, field.metadata["flag"], kind, several))
    return found


def _shown(value) -> str:
    if isinstance(value, tuple):
        return " ".join(_shown(each) for each in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_flags(parser, config) -> None:
    """An argparse option per flagged field of config's class; its help shows config's value where it says
    {default}. Every option defaults to None, so that given_flags tells a given flag from an absent one."""
    for name, spec, kind, several in flagged_fields(type(config)):
        text = spec.help.format(default=_shown(getattr(config, name)))
        if kind is bool:
            parser.add_argument(spec.name, dest=PREFIX + name, action="store_const", const=False, default=None,
                                help=text)
            continue
        parser.add_argument(spec.name, dest=PREFIX + name, type=kind, nargs="+" if several else None, default=None,
                            metavar=spec.metavar or (None if spec.choices else name.upper()),
                            choices=spec.choices or None, help=text)


def given_flags(args, config_type) -> dict:
    """{field name: value} of the flags of config_type the user gave (several values as a tuple)."""
    given = {}
    for name, _, _, several in flagged_fields(config_type):
        value = getattr(args, PREFIX + name, None)
        if value is not None:
            given[name] = tuple(value) if several else value
    return given
