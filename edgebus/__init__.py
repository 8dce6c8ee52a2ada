"""edgebus: Kubernetes-style edge computing over NATS."""

__version__ = "0.1.0"
