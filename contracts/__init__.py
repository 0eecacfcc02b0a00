"""The contracts between Gridwatch's processes and packages: Redis keys and record
formats, roles, ticket states, the node id, shared config types. The bottom layer:
every package may import it, and it imports nothing of ours."""
