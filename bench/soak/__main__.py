"""``python -m bench.soak``: see ``bench/soak/run.py`` and ``docs/reliability.md``."""

import sys

from .run import main

sys.exit(main())
