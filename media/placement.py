"""Which node owns each camera: rendezvous (highest-random-weight) hashing over the live
nodes, with per-node capacity.

Rendezvous hashing (Thaler and Ravishankar, "Using name-based mappings to increase hit
rates", IEEE/ACM ToN 6(1), 1998): every camera ranks every node by a hash of the pair and
goes to the first in its ranking. Every node computes the same answer from the same live
set and camera list, with no coordination; a node that joins takes only the cameras that
now rank it first (about 1/n of them), and a node that leaves gives each of its cameras
to that camera's next choice, so its cameras spread over all the others.

Capacity and balance: cameras are placed one by one, in an order fixed by their own
hash, each on the first node in its ranking that still has room: its share (`shares`:
its capacity `NodeInfo.cameras`, and no more than 5% over an even split) and
`NodeInfo.ingest_mbps`, each camera counted at `camera_mbps`. A camera no node has room
for has no owner (counted in `unplaced`, logged).

The owner pulls, samples and records a camera; others relay it from the owner. Two
nodes whose views of the live set differ for a moment may both want a camera: the
leases (media/leases.py) still give it to one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Container, Iterable

import numpy as np

from gridwatch.media.nodes import NodeInfo

log = logging.getLogger("gridwatch.placement")

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def key_hash(name: str) -> int:
    """A stable 64-bit hash of a name (BLAKE2b): the same on every node and version."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (Steele, Lea, Flood, "Fast splittable pseudorandom number
    generators", OOPSLA 2014): spreads the bits of cam ^ node over all 64."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


# Bounded loads: no node takes more than (1 + BALANCE) times its fair share, so that the
# split stays within a few percent of even however the hashes fall (plain rendezvous
# hashing gives a binomial spread: ±16% at 100 cameras a node). Mirrokni, Thorup and
# Zadimoghaddam, "Consistent Hashing with Bounded Loads", SODA 2018: the moves a change
# of nodes causes stay within a small factor of the plain scheme's.
BALANCE = 0.05


def shares(n_cameras: int, nodes: list[NodeInfo], camera_mbps: float = 4.0) -> list[int]:
    """How many cameras each node may take: its capacity (cameras, and ingest at
    `camera_mbps` a camera), and at most (1 + BALANCE) of an even share, the even share
    raised (water-filling) where nodes with little capacity leave cameras to the others."""
    cap = [min(n.cameras if n.cameras is not None else n_cameras,
               int(n.ingest_mbps // camera_mbps) if n.ingest_mbps is not None else n_cameras) for n in nodes]  # fmt: skip
    bound = -(-n_cameras * (1 + BALANCE) // len(nodes))
    while sum(min(c, bound) for c in cap) < n_cameras and bound < n_cameras:
        open_nodes = sum(1 for c in cap if c > bound) or 1
        bound += max(1, -(-(n_cameras - sum(min(c, bound) for c in cap)) // open_nodes))
    return [int(min(c, bound)) for c in cap]


def rendezvous(cameras: list[str], hashes: np.ndarray, nodes: list[NodeInfo],
               camera_mbps: float) -> tuple[dict[str, str], list[str]]:  # fmt: skip
    """Owners for `cameras` (with `hashes[i] = key_hash(cameras[i])`, uint64) over
    `nodes`: ({camera: node name}, [cameras no node has room for])."""
    if not nodes or not cameras:
        return {}, list(cameras) if not nodes else []
    node_h = np.array([key_hash(n.node) for n in nodes], dtype=np.uint64)
    scores = _mix(hashes[:, None] ^ node_h[None, :])
    names = [n.node for n in nodes]
    ranks = np.argsort(~scores, axis=1, kind="stable")  # descending: ~ reverses unsigned order
    room = shares(len(cameras), nodes, camera_mbps)
    order = np.argsort(hashes, kind="stable")
    # In hash order each camera takes the first of its nodes with room. Until some node
    # is full every camera gets its first choice: that prefix is taken at once (numpy),
    # and only the rest camera by camera (a few percent of them: loads are bounded at
    # 1 + BALANCE of an even share).
    first = ranks[order, 0]
    seat = np.empty(len(first), dtype=np.int64)  # the how-many-th first choice of its node
    for j in range(len(nodes)):
        at = np.flatnonzero(first == j)
        seat[at] = np.arange(len(at))
    full = np.flatnonzero(seat >= np.asarray(room, dtype=np.int64)[first])
    k = int(full[0]) if len(full) else len(first)
    owners = {cameras[i]: names[j] for i, j in zip(order[:k].tolist(), first[:k].tolist(), strict=True)}
    for j, n in zip(*np.unique(first[:k], return_counts=True), strict=True):
        room[int(j)] -= int(n)
    unplaced: list[str] = []
    for i in order[k:].tolist():
        for j in ranks[i].tolist():
            if room[j] > 0:
                room[j] -= 1
                owners[cameras[i]] = names[j]
                break
        else:
            unplaced.append(cameras[i])
    return owners, unplaced


class Placement:
    """This node's view of who owns which camera, recomputed when the live nodes or the
    camera list change. `owner(camera)`; `mine(item)` (True too for what is not a
    camera: a published stream belongs to the node it is published to). Listeners get
    the cameras whose owner changed."""

    def __init__(self, me: str, camera_mbps: float, registry: Container[str] = ()):
        self.me = me
        self.camera_mbps = camera_mbps
        self.registry = registry  # every camera id (the node's copy): new ones not yet placed too
        self.owners: dict[str, str] = {}
        self.unplaced: list[str] = []
        self.moves = 0  # cameras whose owner changed, since start (a metric)
        self.listeners: list[Callable[[set[str]], None]] = []
        self._nodes: list[NodeInfo] = []
        self._cameras: list[str] = []
        self._hashes: dict[str, int] = {}

    def update(self, nodes: Iterable[NodeInfo] | None = None, cameras: Iterable[str] | None = None) -> set[str]:
        """Place again with new live nodes and/or camera ids; the cameras whose owner
        changed (listeners are told)."""
        if nodes is not None:
            self._nodes = sorted(nodes, key=lambda n: n.node)
        if cameras is not None:
            self._cameras = sorted(cameras)
            self._hashes = {c: self._hashes.get(c) or key_hash(c) for c in self._cameras}
        hashes = np.fromiter((self._hashes[c] for c in self._cameras), dtype=np.uint64, count=len(self._cameras))
        owners, unplaced = rendezvous(self._cameras, hashes, self._nodes, self.camera_mbps)
        changed = {c for c in owners.keys() | self.owners.keys() if owners.get(c) != self.owners.get(c)}
        if unplaced and unplaced != self.unplaced:
            log.error("cameras with no node that has room (cluster.capacity)",
                      extra={"count": len(unplaced), "first": unplaced[:10]})  # fmt: skip
        self.owners, self.unplaced = owners, unplaced
        if changed:
            self.moves += len(changed)
            for listener in self.listeners:
                try:
                    listener(changed)
                except Exception:  # one listener's fault must not stop the others, nor the beat
                    log.exception("placement listener failed", extra={"cameras": len(changed)})
        return changed

    def added_or_removed(self, ids: Iterable[str], cameras: Container[str]) -> bool:
        """Whether any of `ids` came or went (an edit of a camera moves nothing)."""
        return any((i in cameras) != (i in self._hashes) for i in ids)

    def placed(self, camera: str) -> bool:
        """Whether the last placement counted `camera` (one added since is not yet)."""
        return camera in self._hashes

    def owner(self, camera: str) -> str | None:
        """The camera's owner node; None for no camera of ours, or one nobody has room for."""
        return self.owners.get(camera)

    def mine(self, item: str) -> bool:
        """Whether this node does `item`'s work: a placed camera it owns, or anything that
        is not a camera (a stream published here). A camera not placed yet is nobody's."""
        owner = self.owners.get(item)
        return owner == self.me if owner is not None else item not in self._hashes and item not in self.registry

    def owned(self) -> list[str]:
        """The cameras placed on this node."""
        return [camera for camera, node in self.owners.items() if node == self.me]

    def counts(self) -> dict[str, int]:
        """Cameras per owner node."""
        out: dict[str, int] = {n.node: 0 for n in self._nodes}
        for node in self.owners.values():
            out[node] = out.get(node, 0) + 1
        return out
