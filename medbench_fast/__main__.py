"""``python -m medbench_fast`` is the ``medbench`` command."""

from medbench_fast.cli.main import cli

if __name__ == "__main__":
    cli()
