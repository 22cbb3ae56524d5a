"""The application layer: the ``scene`` command line (``scene.app.cli``) and the demo (``scene.app.demo``).

The top of the house: it may import every layer (``scene.datasets`` -> ``segment2d`` -> ``lift3d`` ->
``tracking`` -> ``scene`` -> ``viz`` -> here) and nothing imports it. Kept import-light: the commands
import what they need when they run.
"""
