"""``medbench cache``: inspect or clear the volume cache."""

from __future__ import annotations

import click

from medbench_fast.cli.options import cache_dir_option


@click.group()
def cache():
    """Inspect or clear the memory-mapped volume cache.

    \b
    Examples:
      medbench cache info
      medbench cache clear
      MEDBENCH_CACHE_DIR=/scratch/cache medbench cache info
    """


@cache.command()
@cache_dir_option
def info(cache_dir):
    """Show the cache folder, its entry count and size."""
    from medbench_fast.data.cache import VolumeCache

    stats = VolumeCache(cache_dir).info()
    click.echo(f"{stats['path']}: {stats['entries']} volumes, {stats['bytes'] / 1e6:.1f} MB")


@cache.command()
@cache_dir_option
@click.option("--jit", is_flag=True, help="Also delete numba's compiled-kernel cache of medbench-fast.")
@click.option("--templates", is_flag=True,
              help="Also delete the compiled leaderboard templates (env MEDBENCH_TEMPLATE_CACHE).")
def clear(cache_dir, jit, templates):
    """Delete every cached volume (sources are never touched)."""
    from medbench_fast.data.cache import VolumeCache

    removed = VolumeCache(cache_dir).clear()
    click.echo(f"removed {removed} cached volumes")
    if templates:
        from medbench_fast.report.html import clear_template_cache

        folder, count = clear_template_cache()
        click.echo(f"removed {count} compiled templates" + (f" in {folder}" if folder else " (no cache folder known)"))
    if jit:
        from pathlib import Path

        import medbench_fast

        folders = list(Path(medbench_fast.__file__).parent.rglob("__pycache__"))
        for folder in folders:
            for f in folder.glob("*.nb[ic]"):
                f.unlink()
        click.echo(f"removed numba cache files in {len(folders)} folders")
