"""The ``medbench`` command group.

Subcommands live one per module and are imported only when invoked, so ``medbench --help``
stays instant (no numba, SimpleITK, onnxruntime or torch import at start-up).
"""

from __future__ import annotations

import gc
import importlib

import click

from medbench_fast import __version__
from medbench_fast.cli.errors import EXIT_CODES_HELP

#: name -> ("module:attribute", one-line help shown by ``medbench --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("medbench_fast.cli.demo:demo", "Generate a synthetic CT dataset and benchmark it end to end."),
    "evaluate": ("medbench_fast.cli.evaluate:evaluate", "Score a folder of predictions against a folder of references."),
    "cache": ("medbench_fast.cli.cache:cache", "Inspect or clear the volume cache."),
    "run": ("medbench_fast.cli.run:run", "Benchmark the configured models on the configured dataset."),
    "config": ("medbench_fast.cli.config:config", "Write a commented example config, or validate one."),
    "profile": ("medbench_fast.cli.profile:profile", "Profile an ONNX model's latency and throughput per batch size."),
    "export": ("medbench_fast.cli.export:export", "Export a model (AI-ENE .h5, Hugging Face, TorchScript) to ONNX plus its spec."),
    "report": ("medbench_fast.cli.report:report", "Rebuild a run folder's CSV, JSON and HTML reports from its Parquet files."),
    "compare": ("medbench_fast.cli.compare:compare", "Put two or more runs side by side, with paired tests between models."),
    "estimate": ("medbench_fast.cli.estimate:estimate", "Predict the wall time of a bigger run from a measured one."),
    "hub": ("medbench_fast.cli.hub:hub", "Hugging Face Hub: list tracked tasks, track models, publish a run."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[cmd_name][0].split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        """Run the subcommand; errors become one ``Error:`` line (tracebacks only with ``--debug``)."""
        from medbench_fast.cli.errors import (
            EXIT_ERROR,
            EXIT_INTERRUPTED,
            describe_os_error,
            output_closed,
            stdout_closed,
        )

        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:
            if isinstance(exc, BrokenPipeError) and stdout_closed():  # ``medbench ... | head -1``
                output_closed()
            if ctx.params.get("debug"):
                raise
            from medbench_fast.cli.errors import InputError
            from medbench_fast.files import UnsafePathError
            from medbench_fast.report.tables import ReportsError
            from medbench_fast.runner.executors.base import WorkerFailed
            from medbench_fast.store.parts import StoreError

            if isinstance(exc, UnsafePathError):  # a run folder holding a link out of it
                raise InputError(str(exc)) from None
            if isinstance(exc, OSError):
                message = describe_os_error(exc)
            elif isinstance(exc, (StoreError, WorkerFailed, ReportsError)):
                message = str(exc)
            else:
                message = f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"
            click.echo(f"Error: {message}", err=True)
            ctx.exit(EXIT_ERROR)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.option("--debug", is_flag=True, envvar="MEDBENCH_DEBUG", help="Show tracebacks of errors (env MEDBENCH_DEBUG=1).")
@click.version_option(__version__, prog_name="medbench")
def cli(debug: bool) -> None:
    """medbench-fast: fast, trustworthy benchmarks for medical-imaging AI.

    \b
    Examples:
      medbench demo --out demo_run
      medbench evaluate --pred preds/ --ref labels/ --out results/
    """
    from medbench_fast.kernels import skip_numba_extensions

    skip_numba_extensions()


#: True in a process that :func:`main` runs (the ``medbench`` command owns the process).
_OWNS_PROCESS = False


def startup_done() -> None:
    """A command's imports are done and its long run starts: in the ``medbench`` process
    (:func:`main`), freeze the objects alive now (numba's, pyarrow's, the project's modules,
    the plan) so that no collection during the run traverses them again. Without this, numba's
    first dispatch in the run sets off a full collection of every object (about 50 ms). An
    in-process caller (``CliRunner``, a notebook) keeps Python's collector as it is."""
    if _OWNS_PROCESS:
        gc.freeze()


def main() -> None:
    """The ``medbench`` console script (and ``python -m medbench_fast``): :func:`cli`, after which
    the process ends without Python's last pass of the cyclic garbage collector over every
    object numba, pyarrow and the command left (0.1-0.3 s of each process's exit). The objects
    are frozen (``gc.freeze``) instead: the exit still runs ``atexit`` handlers, flushes
    standard streams and frees what reference counting frees; the files the command writes
    are closed before it returns. In-process callers (``CliRunner``) use :func:`cli`."""
    global _OWNS_PROCESS
    _OWNS_PROCESS = True
    try:
        cli()
    finally:
        gc.freeze()
