"""Command-line flags declared on config fields (kdviz.core.flags): each kind of field becomes the option a user
expects, --help shows the config's value, only the flags given change the config, and every experiment's flags are
its config's."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import pytest

from kdviz import cli
from kdviz.core.flags import add_flags, flagged_fields, given_flags, flag
from kdviz.experiments import EXPERIMENTS, experiment


@dataclass(frozen=True)
class Toy:
    name: str = "toy"  # no flag: not on the command line
    sizes: tuple[int, ...] = flag((8, 16), "--sizes", "sizes to try (default {default})", "N")
    rate: float = flag(0.25, "--rate", "a rate (default {default})")
    limit: int | None = flag(None, "--limit", "at most this many (default: no limit)", "K")
    shape: str = flag("round", "--shape", "round or square", choices=("round", "square"))
    draw: bool = flag(True, "--no-draw", "do not draw")


def parse(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser()
    add_flags(parser, Toy(rate=0.5))
    return given_flags(parser.parse_args(argv), Toy)


def test_each_kind_of_field_becomes_its_option():
    assert parse(["--sizes", "1", "2", "3", "--rate", "2", "--limit", "7", "--shape", "square", "--no-draw"]) == \
        {"sizes": (1, 2, 3), "rate": 2.0, "limit": 7, "shape": "square", "draw": False}


def test_only_the_flags_given_are_returned():
    assert parse([]) == {}
    assert dataclasses.replace(Toy(), **parse(["--limit", "3"])) == Toy(limit=3)


@pytest.mark.parametrize("argv", [["--sizes"], ["--sizes", "x"], ["--rate", "fast"], ["--shape", "oval"],
                                  ["--name", "other"]])
def test_a_bad_value_is_argparses_error(argv):
    with pytest.raises(SystemExit):
        parse(argv)


def test_help_shows_the_configs_value_and_the_metavar():
    parser = argparse.ArgumentParser()
    add_flags(parser, Toy(sizes=(4,), rate=0.5))
    text = " ".join(parser.format_help().split())
    assert "--sizes N [N ...] sizes to try (default 4)" in text and "a rate (default 0.5)" in text
    assert "--limit K" in text and "--shape {round,square}" in text and "--no-draw do not draw" in text


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_flag_is_its_configs_and_on_the_command_line(name, capsys):
    names = [spec.name for _, spec, _, _ in flagged_fields(type(experiment(name).default_config()))]
    assert names, f"{name} declares no flag"
    with pytest.raises(SystemExit):
        cli.make_parser().parse_args(["experiment", name, "--help"])
    shown = capsys.readouterr().out
    assert all(f"  {option} " in shown for option in names)


def test_an_experiment_flag_that_the_user_gets_wrong_is_one_line_and_a_non_zero_exit(capsys):
    assert cli.main(["experiment", "ensemble", "--combine", "mean"]) == cli.EXIT_BAD_INPUT
    [line] = capsys.readouterr().err.splitlines()
    assert "argument --combine: invalid choice: 'mean'" in line
