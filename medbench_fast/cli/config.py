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
    """Validate PATH; errors name the key path and what was expected."""
    from medbench_fast.config import ConfigError, load_config

    try:
        cfg, _ = load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{path}: valid ({len(cfg['models'])} models)")
