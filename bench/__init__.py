"""The Luminet benchmark suite (issue 4): ``python -m bench``, or ``make bench``."""
