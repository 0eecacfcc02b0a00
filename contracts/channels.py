"""Redis pub/sub channels more than one package publishes on."""

WALL = "gw:events"  # ticket changes, officers, camera changes: every wall socket on every node
