"""``python -m scene``: the ``scene`` command line (an entry point of the application layer, which lives in
``scene.app``; nothing imports this module)."""
import sys

from scene.app.cli import main

sys.exit(main())
