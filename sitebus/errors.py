"""The few errors sitebus raises on purpose, each with the sysexits code it exits with.

Each class subclasses the builtin a caller would naturally catch, so code that knows nothing
of sitebus still handles them::

    SitebusError                           70 EX_SOFTWARE
    ├── UsageError(ValueError)             64 EX_USAGE        bad command line
    ├── ConfigError(ValueError)            78 EX_CONFIG       bad config file, key or value
    ├── NoInputError(FileNotFoundError)    66 EX_NOINPUT      a file to read is missing (PID file)
    ├── UnavailableError(OSError)          69 EX_UNAVAILABLE  address in use, missing program
    ├── CannotCreateError(OSError)         73 EX_CANTCREAT    PID file, socket file, log file
    ├── TemporaryError(OSError)            75 EX_TEMPFAIL     a live instance holds the PID file
    └── NoPermissionError(PermissionError) 77 EX_NOPERM       privileges

A message names the setting, the value, where it came from and what was expected, e.g.
``engine.pidfile.on: expected True or False, got 'yes' (site.conf, [global], line 4)``.

``ChannelFailures`` (from the bus) gathers the errors of several listeners; ``exit_code_of``
digs the most telling code out of it.
"""

from __future__ import annotations

import os

from sitebus.bus import ChannelFailures

EX_OK = os.EX_OK  # 0
EX_USAGE = 64
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


class SitebusError(Exception):
    """An error sitebus reports to the person running the site, with an exit code."""

    exit_code = EX_SOFTWARE


class UsageError(SitebusError, ValueError):
    """The command line is wrong: an unknown flag, a missing argument, exclusive flags."""

    exit_code = EX_USAGE


class ConfigError(SitebusError, ValueError):
    """A config file, section, key or value is wrong."""

    exit_code = EX_CONFIG

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        value: object = None,
        filename: str | None = None,
        section: str | None = None,
        lineno: int | None = None,
    ) -> None:
        self.key = key
        self.value = value
        self.filename = filename
        self.section = section
        self.lineno = lineno
        where = [
            part
            for part in (
                filename,
                f"[{section}]" if section is not None else None,
                f"line {lineno}" if lineno is not None else None,
            )
            if part
        ]
        prefix = f"{key}: " if key else ""
        suffix = f" ({', '.join(where)})" if where else ""
        super().__init__(f"{prefix}{message}{suffix}")


class NoInputError(SitebusError, FileNotFoundError):
    """A file the command must read does not exist (the PID file of a site to control)."""

    exit_code = EX_NOINPUT


class UnavailableError(SitebusError, OSError):
    """Something the site needs is not available: an address in use, a missing program."""

    exit_code = EX_UNAVAILABLE


class CannotCreateError(SitebusError, OSError):
    """A file the site must create (PID file, socket file, log file) cannot be created."""

    exit_code = EX_CANTCREAT


class TemporaryError(SitebusError, OSError):
    """The site cannot start now but may later: another live instance holds the PID file."""

    exit_code = EX_TEMPFAIL


class NoPermissionError(SitebusError, PermissionError):
    """The process lacks a privilege it was asked to use or drop."""

    exit_code = EX_NOPERM


def exit_code_of(error: BaseException) -> int:
    """Return the sysexits code for an error, looking inside ChannelFailures."""
    if isinstance(error, ChannelFailures):
        codes = [exit_code_of(e) for e in error.get_instances()]
        specific = [code for code in codes if code != EX_SOFTWARE]
        return specific[0] if specific else EX_SOFTWARE
    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) else EX_SOFTWARE
    return getattr(error, "exit_code", EX_SOFTWARE)


def root_causes(error: BaseException) -> list[BaseException]:
    """Return the errors inside ChannelFailures (or the error itself), for reporting."""
    if isinstance(error, ChannelFailures):
        found: list[BaseException] = []
        for inner in error.get_instances():
            found.extend(root_causes(inner))
        return found
    return [error]
