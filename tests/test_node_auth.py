"""Node tokens (signaling/node_auth.py) hold between nodes whose clocks differ by a few
seconds either way, and not past their lifetime."""

from __future__ import annotations

import time

from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from gridwatch.signaling.node_auth import SALT, NodeTokens

SECRET = "s" * 32


def issued_by_a_clock_off_by(seconds: float, node: str = "n2") -> str:
    """A node token made on a node whose clock is `seconds` ahead of this one's."""

    class Skewed(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() + seconds)

    return URLSafeTimedSerializer(SECRET, salt=SALT, signer=Skewed).dumps({"n": node})


def test_a_token_from_a_node_whose_clock_is_ahead_or_behind_is_taken():
    tokens = NodeTokens(SECRET, ttl_s=60)
    assert tokens.verify(tokens.issue("n1")) == "n1"
    for skew in (-5, -1, 1, 2, 5):  # itsdangerous alone refuses any token stamped ahead
        assert tokens.verify(issued_by_a_clock_off_by(skew)) == "n2", skew


def test_an_old_a_far_future_or_a_foreign_token_is_refused():
    tokens = NodeTokens(SECRET, ttl_s=60)
    assert tokens.verify(issued_by_a_clock_off_by(-120)) is None
    assert tokens.verify(issued_by_a_clock_off_by(120)) is None
    assert NodeTokens("t" * 32).verify(tokens.issue("n1")) is None
    assert tokens.verify("garbage") is None
