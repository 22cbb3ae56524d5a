"""``python -m scene``: the ``scene`` command line (an entry point of the application layer, which lives in
``scene.app``; nothing imports this module)."""
from scene.app.cli import entry

entry()
