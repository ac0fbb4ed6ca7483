"""Every failure nmroute reports: one exception tree, one table of exit codes.

Commands raise; ``cli.main`` (and each tool's standalone entry) turns the
exception into one message on stderr and the exit code below, so the same
failure gives the same code in run, check, bridge, pkt-gen, bench and stats.
This module imports nothing of nmroute's: everything else may import it.
"""
from __future__ import annotations

import sys

OK = 0
FAILED = 1        # ran, but something went wrong (accounting, I/O, nothing to read)
BAD_CONFIG = 2    # usage or configuration errors: nothing was opened
NO_PORT = 3       # a port or element could not be set up


class NmrouteError(Exception):
    """The base of every failure nmroute reports; str() is the message."""


class UsageError(NmrouteError):
    """Bad command-line flags (or a combination of them)."""


class ConfigError(NmrouteError):
    """Every problem found in one or more config files, at once.

    `issues` are objects with `loc` and `message` (config.yamlloc.ConfigIssue);
    str() has one per line, sorted by place."""

    def __init__(self, issues: list):
        self.issues = sorted(issues, key=lambda i: (i.loc, i.message))
        super().__init__("\n".join(str(i) for i in self.issues))


class ParamError(NmrouteError, ValueError):
    """A value does not fit its spec; the message says what was expected.

    `path` is where inside the value (list indexes and keys, outermost
    first: ``(2, "dst")`` for ``rules[2].dst``); `offset` is a 0-based
    character offset inside a string value, where known."""

    def __init__(self, message: str, path: tuple = (), offset: int | None = None):
        super().__init__(message)
        self.path = tuple(path)
        self.offset = offset
        self.issues: list[ParamError] = [self]   # several, for a group()

    @classmethod
    def group(cls, errors: list[ParamError]) -> ParamError:
        """One error standing for several problems of one value (bad items of
        a list): the loader reports each of `issues` at its own place."""
        if len(errors) == 1:
            return errors[0]
        e = cls("; ".join(str(x) for x in errors))
        e.issues = list(errors)
        return e

    def within(self, *outer) -> ParamError:
        """This error, located inside `outer` (prepended to its path)."""
        for e in self.issues:
            e.path = tuple(outer) + e.path
        if self not in self.issues:
            self.path = tuple(outer) + self.path
        return self


class BpfError(ParamError):
    """A tcpdump expression libpcap rejects, or a program the interpreter cannot run."""


class PcapFormatError(NmrouteError, ValueError):
    """A file that is not a pcap/pcapng capture nmroute reads."""


class UserElementError(NmrouteError):
    """A user's element that cannot be found, built or imported."""


class BuildError(UserElementError):
    """Cython or the C compiler failed; the message has their first errors."""


class PortError(NmrouteError):
    """A port that cannot be opened; str() is one line saying why."""

    def __init__(self, port: str, reason: str):
        super().__init__(f"{port}: {reason}")
        self.port = port
        self.reason = reason


class RunError(NmrouteError):
    """A pipeline that passed its checks but cannot be set up or run."""


class NotRunning(NmrouteError):
    """`nmroute stats` found no running nmroute to read."""


# The one table from failure to exit code: the most specific class wins.
EXIT_CODES: dict[type, int] = {
    NmrouteError: FAILED,
    UsageError: BAD_CONFIG,
    ConfigError: BAD_CONFIG,
    ParamError: BAD_CONFIG,
    BpfError: BAD_CONFIG,
    UserElementError: BAD_CONFIG,
    BuildError: NO_PORT,
    PcapFormatError: NO_PORT,
    PortError: NO_PORT,
    RunError: NO_PORT,
    NotRunning: FAILED,
}


def exit_code(e: BaseException) -> int:
    """The exit code of a failure (FAILED for anything not in the table)."""
    for cls in type(e).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return FAILED


def fail(message: str, code: int) -> int:
    """Print message as nmroute's one error line (or lines) and return code."""
    print(f"nmroute: {message}" if "\n" not in message else message, file=sys.stderr)
    return code


def report(e: NmrouteError, prefix: str = "") -> int:
    """Print a failure and return its exit code."""
    return fail(f"{prefix}{e}", exit_code(e))


def run(command, args) -> int:
    """Run a command (a function of its parsed args returning an exit code);
    a failure it raises is printed once, with args.error_prefix if set, and
    becomes its exit code. Every entry point (cli.main, each tool's own
    __main__) goes through here."""
    try:
        return command(args)
    except NmrouteError as e:
        return report(e, getattr(args, "error_prefix", ""))
