"""The all-in-one edge runtime: every edge service of a node in one process
(``python -m edgebus.allinone``), each with its own connection, credential and store; only
the process boundary moves. See docs/footprint.md."""
