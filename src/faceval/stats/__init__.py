"""Statistics of scored pairs as typed results: streaming counts (accumulators, metrics, lattice), intervals
(bootstrap, influence), groups, model comparison, pair lists and 10-fold accuracy, 1:N gallery, search and
identification figures, the dataset audit.

May import: `faceval.sources`, `faceval.models`, `faceval.errors`, `faceval.atomic`. Never compute, output or the
top-level orchestration (checked by tests/test_layout.py; the one exception is listed there).
"""
