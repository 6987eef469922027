"""Data in: find the images and their identities (datasets), read image files (images), hash files and settings
(hashing), pause while the CPU is too hot (thermal).

May import: `faceval.errors`, `faceval.atomic`, `faceval/data`, and other modules of this package. Nothing here
knows about models, statistics or outputs (checked by tests/test_layout.py).
"""
