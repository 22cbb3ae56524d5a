"""``python -m scene.app``: the ``scene`` command line."""
import sys

from scene.app.cli import main

sys.exit(main())
