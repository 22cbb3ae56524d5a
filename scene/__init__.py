"""The 3D instance map, storage, queries, evaluation, pipeline and CLI.

Kept import-light on purpose: ``scene.datasets`` (the lowest layer) lives under this package, so
importing it must not pull in the higher layers.
"""
__version__ = "0.1.0"
