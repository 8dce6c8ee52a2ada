"""apiserver: the Kubernetes-style REST API over the NATS KV object store (cloud side)."""
