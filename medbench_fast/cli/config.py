"""``medbench config``: write or check a benchmark config."""

from __future__ import annotations

import click


@click.group()
def config():
    """Write a commented example config, or validate one.

    \b
    Examples:
      medbench config init > benchmark_config.yaml
      medbench config check benchmark_config.yaml
    """


@config.command()
def init():
    """Print a commented example config listing every key and its default."""
    from medbench_fast.config import example_config

    click.echo(example_config(), nl=False)


@config.command()
@click.argument("path", type=click.Path(dir_okay=False))
def check(path):
    """Validate PATH: every key and value, and that its folders and model files exist.

    Errors name the key path and what was expected (exit code 2).
    """
    from medbench_fast.cli.errors import user_errors
    from medbench_fast.config import load_config, preflight

    with user_errors():
        cfg, _ = load_config(path)
        preflight(cfg, source=path)
    click.echo(f"{path}: valid ({len(cfg.models)} models)")
