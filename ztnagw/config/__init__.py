# -*- test-case-name: tests.config.test_build -*-
"""
The gateway's configuration, written in FortiOS CLI syntax.

The public entry points: L{load} and L{loads} turn text into a validated,
typed L{Config} (see L{ztnagw.config.model}) or raise
L{ConfigurationRejected} with every problem found, each with its
C{file:line}; L{show} writes a L{Config} back as text.
"""

from __future__ import annotations

import os

from ztnagw.config.model import Config
from ztnagw.config.tree import ConfigError, ConfigurationRejected

__all__ = [
    "Config",
    "ConfigError",
    "ConfigurationRejected",
    "load",
    "loads",
    "show",
]


def load(path: str) -> Config:
    """
    Read, parse and check a configuration file.

    Relative paths in it resolve against its directory (C{state-dir}) and
    against the state directory (certificate and key files).  When it holds
    an inline private key, the file must be readable by its owner only.
    This reads files: call it before the reactor runs or in a thread.

    @param path: the file; error locations name it as given.
    @raise ConfigurationRejected: the configuration is invalid; C{errors}
        lists every problem found.
    @raise OSError: the file cannot be read.
    """
    from ztnagw.config.build import buildConfig
    from ztnagw.config.syntax import parseFile

    document = parseFile(path)
    return buildConfig(
        document, os.path.dirname(os.path.abspath(path)), configFile=path
    )


def loads(
    text: str | bytes,
    source: str = "<string>",
    baseDirectory: str | None = None,
) -> Config:
    """
    Parse and check a configuration given as text.

    @param source: the name error locations use.
    @param baseDirectory: what a relative C{state-dir} is relative to; the
        current directory by default.
    @raise ConfigurationRejected: the configuration is invalid; C{errors}
        lists every problem found.
    """
    from ztnagw.config.build import buildConfig
    from ztnagw.config.syntax import parse

    document = parse(text, source)
    return buildConfig(
        document, os.getcwd() if baseDirectory is None else baseDirectory
    )


def show(config: Config, full: bool = False, redact: bool = False) -> str:
    """
    The configuration in FortiOS CLI syntax; see
    L{ztnagw.config.printer.show}.
    """
    from ztnagw.config.printer import show as _show

    return _show(config, full, redact)
