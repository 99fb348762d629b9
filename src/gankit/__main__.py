"""``python -m gankit`` runs the command line."""

import os
import sys

# ``python -m`` puts the current folder first on the import path; a module lying there
# (a ``matplotlib.py`` in a downloaded dataset folder, say) would then be run by a lazy
# import. gankit itself is already imported, so the entry can go: only ``--import`` adds
# to the import path, and only the module it names.
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from .cli import main  # noqa: E402

raise SystemExit(main())
