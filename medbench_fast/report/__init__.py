"""Reports derived from a run folder's Parquet files: CSV, ``summary.json`` and ``leaderboard.html``.

Entry points: :func:`medbench_fast.report.tables.write_reports` and
:func:`medbench_fast.report.tables.build_summary`.
"""
