"""The project's settings for test runs, with DEBUG on unless the environment says otherwise.

pytest-django imports the settings before any conftest.py runs, so a conftest
cannot supply DEBUG in time; this module can.
"""

import os

os.environ.setdefault("DEBUG", "true")

from tunnelsite.settings import *  # noqa: F403
