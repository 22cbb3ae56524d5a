"""The 3D instance map, storage, queries, evaluation (``scene.eval``) and the pipeline; the CLI and the demo
live in the application layer ``scene.app``.

Kept import-light on purpose: ``scene.datasets`` (the lowest layer) lives under this package, so
importing it must not pull in the higher layers.
"""
__version__ = "0.1.0"
