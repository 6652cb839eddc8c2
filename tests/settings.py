"""The project's settings for test runs, with DEBUG on unless the environment says otherwise.

pytest-django imports the settings before any conftest.py runs, so a conftest
cannot supply DEBUG in time; this module can.
"""

import os

os.environ.setdefault("DEBUG", "true")

from tunnelsite.settings import *  # noqa: F403

# WhiteNoise warns when STATIC_ROOT does not exist, as on a clean clone before
# collectstatic; with DEBUG it finds the files in the apps and needs no STATIC_ROOT.
STATIC_ROOT = None
