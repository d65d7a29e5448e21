"""Executors: where case workers run. Each takes the remaining cases and a sink, and returns
:class:`~medbench_fast.runner.executors.base.ExecStats`; the rows are the same whichever runs them."""
