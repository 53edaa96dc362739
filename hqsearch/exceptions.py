"""Every error meant for the user, in one place: the CLI prints any `HQSearchError` as one line.

Each message names what is wrong (the config key, the file, the tool) and what was expected, so it is
shown as it is, without a traceback. Anything else that escapes is a bug in hqsearch.
"""

from __future__ import annotations


class HQSearchError(Exception):
    """An error whose message is meant for the user as it is."""


class ConfigError(HQSearchError):
    """A study config that cannot be used; the message names the file, the line and the key."""


class StudyError(HQSearchError):
    """The storage cannot be reached, or holds something that does not fit the request."""


class KeyedError(HQSearchError):
    """An error about one config key (`data.path`, `model.function`): the caller adds file and line."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message, key)
        self.message, self.key = message, key

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class DataError(KeyedError):
    """The data section points at something that cannot be loaded; the message names it."""


class DataFileMissing(DataError):
    """A data file the config names is not on this machine (the config may be right where it will run)."""


class DataNotHere(ConfigError):
    """`DataFileMissing`, located in the config: `run` refuses to start, `check` reports and passes."""


class ToolNotHere(ConfigError):
    """A tool the config asks for is not on this machine's PATH: `run` refuses to start; `check` of a Ray
    study, whose tools live on its nodes, warns instead."""


class ModelError(KeyedError):
    """The model section cannot build a model for this data, or a model is not an HGQ2 model."""


class FirmwareError(HQSearchError):
    """A model cannot be turned into firmware with these settings; the message names the setting."""


class SynthError(HQSearchError):
    """A synthesis tool failed, ran over its time, or left no usable report; the message says which."""


class ReportError(HQSearchError):
    """A synthesis report is missing or cannot be read."""


class PragmaError(HQSearchError):
    """A pragma fix-up cannot be applied to the written HLS project."""
