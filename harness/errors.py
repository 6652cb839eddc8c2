"""The one error the harness raises."""


class HarnessError(Exception):
    """A process did not start, print, stop or answer as expected; the message says what.

    It carries the process's own output where there is one. Tests let it fail the
    test; the bench records it against the figure it was measuring.
    """
