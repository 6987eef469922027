"""Where the work runs: pairs scored in this process (local), on a Dask cluster (distributed) or a GPU (gpu), and
the engine that turns ``--scheduler``/``--device`` into the embedding workers and the pair feed.

May import: `faceval.sources`, `faceval.models`, `faceval.stats`, `faceval.errors`, `faceval.atomic`. Never output
or the top-level orchestration (checked by tests/test_layout.py).
"""
