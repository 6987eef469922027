"""Results out: the typed results (`Result`, `Evaluation`), the terminal summary, metrics.json/CSV/Parquet files,
plots (drawn in a forked process), report.html pages, identification outputs, group presentation, fonts.

May import: every earlier package (`faceval.sources`, `faceval.models`, `faceval.stats`, `faceval.compute`),
`faceval.errors`, `faceval.atomic`. Never the top-level orchestration (checked by tests/test_layout.py).
"""
