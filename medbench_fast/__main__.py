"""``python -m medbench_fast`` is the ``medbench`` command."""

from medbench_fast.cli.main import main

if __name__ == "__main__":
    main()
