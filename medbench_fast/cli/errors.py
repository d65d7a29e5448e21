"""Exit codes of every ``medbench`` command, and how errors reach the user.

A user error (bad option, invalid config, a run folder that cannot take the run, a corrupt
file) is one ``Error: ...`` line naming the file or key and the problem; a programming error
is reported the same way with a hint, and its traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import errno
import os
import select
import sys
from contextlib import contextmanager
from typing import NoReturn

import click

#: Exit codes (documented in ``medbench --help`` and the README).
EXIT_OK = 0
EXIT_ERROR = 1  # the command stopped on an error (I/O, disk full, corrupt files, internal error)
EXIT_USAGE = 2  # usage and config errors: nothing was run
EXIT_FAILED_PAIRS = 3  # the run finished, but some (model, case) pairs failed (--allow-failures: 0)
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_OUTPUT_CLOSED = 141  # standard output closed by its reader (128 + SIGPIPE, as the shell reports it)

EXIT_CODES_HELP = """\b
Exit codes:
  0    every (model, case) pair succeeded
  1    stopped on an error (I/O, disk full, corrupt run files, internal error)
  2    usage or config error, or a run folder that cannot take the run: nothing run
  3    finished with failed (model, case) pairs (0 with --allow-failures)
  130  interrupted (Ctrl-C); finished cases are kept
  141  standard output closed early (piped into head); nothing printed"""


class InputError(click.ClickException):
    """A usage, config or run-folder error: exit code 2, one line, no usage text."""

    exit_code = EXIT_USAGE


def input_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the input is wrong" (imported lazily: they live in heavy modules)."""
    from medbench_fast.config import ConfigError
    from medbench_fast.files import UnsafePathError
    from medbench_fast.models.spec import ModelError
    from medbench_fast.runner.identity import RunFolderError
    from medbench_fast.store.lock import RunLockedError

    return ConfigError, ModelError, RunFolderError, RunLockedError, UnsafePathError


@contextmanager
def user_errors(*extra: type[BaseException]):
    """Turn the input errors (and ``extra`` types) raised inside into :class:`InputError`."""
    try:
        yield
    except (*input_error_types(), *extra) as exc:
        raise InputError(str(exc)) from None


def describe_os_error(exc: OSError) -> str:
    """``<file>: <what the system said>``, with a plain word for a full disk (the file is left out
    where the error names none; the writers of the project name theirs)."""
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"{where}no space left on the device; finished results written so far are kept"
    return f"{where}{exc.strerror or (exc.args[0] if exc.args else type(exc).__name__)}"


def stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (another broken pipe, a worker's
    or a server's, is an error to report)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test runner's buffer), no poll
        return False


def output_closed() -> NoReturn:
    """Exit quietly with :data:`EXIT_OUTPUT_CLOSED` when standard output was closed by its reader
    (Python's recommended handling of ``SIGPIPE``: point stdout at devnull so that the flush at
    exit raises nothing)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor behind sys.stdout (a test runner's buffer)
        pass
    raise SystemExit(EXIT_OUTPUT_CLOSED)


def finish(n_failed: int, allow_failures: bool, where: str) -> None:
    """Exit with :data:`EXIT_FAILED_PAIRS` when pairs failed (unless allowed)."""
    if n_failed and not allow_failures:
        click.echo(f"{n_failed} failed (model, case) pair(s); see {where} (exit code {EXIT_FAILED_PAIRS}; "
                   f"--allow-failures exits 0)", err=True)
        raise SystemExit(EXIT_FAILED_PAIRS)


def stop_unless_whole(result, resume_with: str) -> bool:
    """Tell an interrupted run how to resume (exit 130), or a finished shard what remains;
    True when ``result`` is a finished shard (the command has nothing more to report)."""
    if result.interrupted:
        click.echo(f"\ninterrupted; finished cases are saved in {result.run_dir}", err=True)
        click.echo(f"resume with: {resume_with}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if not result.shard_done:
        return False
    from medbench_fast.runner.pipeline import shard_statuses

    statuses = shard_statuses(result.run_dir, result.shard_done.count)
    waiting = [k for k, v in statuses.items() if v != "finished"]
    click.echo(f"shard {result.shard_done}: {result.n_cases} case(s) -> {result.run_dir}")
    click.echo(f"shards not finished yet: {', '.join(waiting)}" if waiting else
               f"all shards finished; consolidate with: {resume_with}")
    return True
