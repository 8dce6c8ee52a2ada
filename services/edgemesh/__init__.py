"""edgemesh: service discovery (DNS) and an L4 proxy to pods on this and other edge nodes,
tunnelled over NATS (edge)."""
