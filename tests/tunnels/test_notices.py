"""The limit on refusal notices per tunnel and second."""

from tunnels.edge.notices import NoticeLimit


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_at_most_n_notices_per_second_per_tunnel():
    """Past the limit a tunnel's notices are dropped until the next second; others go on."""
    clock = Clock()
    limit = NoticeLimit(per_second=3, clock=clock)
    assert [limit.allow("a") for _ in range(5)] == [True, True, True, False, False]
    assert limit.allow("b")
    clock.now += 1
    assert limit.allow("a")
