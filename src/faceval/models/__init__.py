"""Models: the embedders (dlib, ONNX) and their face alignment, model files, the similarity of two embeddings
and all-pair scoring (scoring), the embedding store and the extraction of a dataset's embeddings, templates.

May import: `faceval.sources`, `faceval.errors`, `faceval.atomic`, `faceval/data`. Never statistics, compute,
output or the top-level orchestration (checked by tests/test_layout.py).
"""
