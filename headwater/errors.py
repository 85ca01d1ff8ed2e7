"""Errors a user can act on: the CLI prints them as one line, never as a traceback."""

from __future__ import annotations


class HeadwaterError(Exception):
    """Base of every error that names its cause and what to do about it."""


class ConfigError(HeadwaterError):
    """A setting is wrong: unreachable endpoint, bad credentials, missing binary."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


class InputError(HeadwaterError):
    """A user input (file, parameter, expression) is invalid; the message names it."""
