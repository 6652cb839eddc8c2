#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tunnelsite.settings")
    try:
        from django.core.exceptions import ImproperlyConfigured
        from django.core.management import execute_from_command_line
    except ImportError:
        sys.exit(
            "error: Django is not installed for this Python; use the project's virtualenv "
            "(`. .venv/bin/activate`, made by `make serve`)"
        )
    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:  # a setting to fix: one line, not a traceback
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
