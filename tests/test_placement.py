"""Camera placement (media/placement.py): rendezvous hashing with bounded loads and
per-node capacity, as every node computes it from the same live set."""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridwatch.media.nodes import NodeInfo
from gridwatch.media.placement import BALANCE, Placement, _mix, key_hash, rendezvous, shares


def node(name: str, cameras: int | None = None, mbps: float | None = None) -> NodeInfo:
    return NodeInfo(name, f"http://{name}", f"http://{name}", cameras, mbps)


def placed(cameras: list[str], nodes: list[NodeInfo], me: str = "n0", mbps: float = 4.0) -> Placement:
    p = Placement(me, mbps)
    p.update(nodes, cameras)
    return p


CAMERAS = [f"cam-{i:05d}" for i in range(3000)]


def test_every_node_computes_the_same_owners_whatever_order_it_sees_the_nodes_in():
    nodes = [node(f"n{i}") for i in range(5)]
    a = placed(CAMERAS, nodes)
    b = placed(list(reversed(CAMERAS)), list(reversed(nodes)), me="n3")
    assert a.owners == b.owners


@settings(max_examples=25, deadline=None)
@given(n_nodes=st.integers(2, 12), n_cameras=st.integers(1, 2000), seed=st.integers(0, 2**32))
def test_no_node_takes_more_than_its_bounded_share(n_nodes, n_cameras, seed):
    rng = random.Random(seed)
    cameras = [f"c{rng.getrandbits(48):x}-{i}" for i in range(n_cameras)]
    p = placed(cameras, [node(f"node-{rng.getrandbits(32):x}-{i}") for i in range(n_nodes)])
    counts = p.counts()
    assert sum(counts.values()) == n_cameras and not p.unplaced
    assert max(counts.values()) <= -(-n_cameras * (1 + BALANCE) // n_nodes)


@settings(max_examples=40, deadline=None)
@given(n_nodes=st.integers(1, 12), n_cameras=st.integers(1, 3000), seed=st.integers(0, 2**32),
       small=st.lists(st.integers(0, 400), max_size=4))  # fmt: skip
def test_each_camera_takes_the_first_of_its_nodes_with_room_in_hash_order(n_nodes, n_cameras, seed, small):
    """Bounded-load rendezvous, stated camera by camera (Mirrokni, Thorup, Zadimoghaddam,
    SODA 2018), is what rendezvous() computes with its numpy prefix."""
    rng = random.Random(seed)
    cameras = [f"c{rng.getrandbits(48):x}-{i}" for i in range(n_cameras)]
    nodes = [node(f"n{i}-{rng.getrandbits(16):x}", small[i] if i < len(small) else None) for i in range(n_nodes)]
    hashes = np.array([key_hash(c) for c in cameras], dtype=np.uint64)
    room = shares(n_cameras, nodes)
    expected, nowhere = {}, []
    for i in sorted(range(n_cameras), key=lambda i: int(hashes[i])):
        by_score = sorted(range(n_nodes), key=lambda j: -int(_mix(np.array([hashes[i] ^ np.uint64(key_hash(nodes[j].node))]))[0]))
        j = next((j for j in by_score if room[j] > 0), None)
        if j is None:
            nowhere.append(cameras[i])
        else:
            room[j] -= 1
            expected[cameras[i]] = nodes[j].node
    assert rendezvous(cameras, hashes, nodes, 4.0) == (expected, nowhere)


def test_a_node_that_joins_takes_about_its_share_and_nothing_else_moves():
    nodes = [node(f"n{i}") for i in range(4)]
    p = placed(CAMERAS, nodes)
    before = dict(p.owners)
    moved = p.update(nodes=[*nodes, node("n4")])
    assert {p.owners[c] for c in moved} == {"n4"}  # only onto the new node
    assert 0.8 / 5 <= len(moved) / len(CAMERAS) <= 1.2 / 5, len(moved)
    assert all(p.owners[c] == before[c] for c in CAMERAS if c not in moved)


def test_a_node_that_leaves_spreads_its_cameras_over_all_the_others():
    nodes = [node(f"n{i}") for i in range(5)]
    p = placed(CAMERAS, nodes)
    lost = {c for c, n in p.owners.items() if n == "n2"}
    moved = p.update(nodes=[n for n in nodes if n.node != "n2"])
    assert lost <= moved
    assert len(moved - lost) <= 0.02 * len(CAMERAS)  # bounded loads may shift a few more
    takers = collections.Counter(p.owners[c] for c in lost)
    assert set(takers) == {"n0", "n1", "n3", "n4"}
    assert min(takers.values()) >= 0.15 * len(lost)


def test_capacity_is_a_hard_limit_and_what_fits_nowhere_is_unplaced():
    nodes = [node("small", cameras=100), node("big"), node("ingest", mbps=40.0)]
    p = placed(CAMERAS[:1000], nodes, mbps=4.0)
    counts = p.counts()
    assert counts["small"] <= 100 and counts["ingest"] <= 10
    assert sum(counts.values()) == 1000 and not p.unplaced  # "big" takes the rest
    tight = placed(CAMERAS[:1000], [node("a", cameras=300), node("b", cameras=300)])
    assert sorted(tight.counts().values()) == [300, 300] and len(tight.unplaced) == 400


def test_shares_raise_the_even_split_where_small_nodes_leave_cameras_over():
    assert shares(100, [node("a"), node("b")]) == [53, 53]  # 5% over 50, rounded up
    assert shares(100, [node("a", cameras=10), node("b"), node("c")]) == [10, 45, 45]


def test_mine_is_true_for_what_is_no_camera_and_false_for_a_camera_not_placed_yet():
    registry = {c: None for c in CAMERAS[:10]}
    p = Placement("n0", 4.0, registry)
    p.update([node("n0")], CAMERAS[:5])
    assert all(p.mine(c) for c in CAMERAS[:5])
    assert not p.mine(CAMERAS[7])  # in the registry, not placed yet: nobody's
    assert p.mine("drone-1")  # a stream published here


@pytest.mark.parametrize("n", [1, 3])
def test_listeners_hear_the_cameras_whose_owner_changed(n):
    heard: list[set[str]] = []
    p = Placement("n0", 4.0)
    p.listeners.append(heard.append)
    p.update([node(f"n{i}") for i in range(n)], CAMERAS[:50])
    assert heard == [set(CAMERAS[:50])]
    p.update(cameras=CAMERAS[:49])
    assert heard[-1] == {CAMERAS[49]}


async def test_a_second_process_under_a_live_nodes_name_is_refused_and_a_dead_ones_name_is_taken(redis_server):
    import asyncio

    import redis.asyncio as aioredis

    from gridwatch.media.nodes import NodeNameInUse, NodeRegistry

    client = aioredis.Redis.from_url(redis_server.url)
    try:
        first = NodeRegistry(client, node("n1"), lease_s=1.0)
        await first.join()

        async def beating():
            while True:
                await first.beat()
                await asyncio.sleep(0.2)

        beat = asyncio.create_task(beating())
        with pytest.raises(NodeNameInUse, match="n1"):
            await NodeRegistry(client, node("n1"), lease_s=1.0).join()
        beat.cancel()  # n1 dies (no leave): its name is free once it has not beaten for lease_s
        again = NodeRegistry(client, node("n1"), lease_s=1.0)
        await again.join()
        assert set(again.live) == {"n1"} and again.live["n1"].instance == again.me.instance
        await again.leave()
        assert await client.hlen("gw:nodes") == 0 and await client.zcard("gw:nodes:seen") == 0
    finally:
        await client.aclose()
