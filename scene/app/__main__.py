"""``python -m scene.app``: the ``scene`` command line."""
from scene.app.cli import entry

entry()
