"""scheduler: binds pods to nodes, and keeps PodDisruptionBudgets' status (cloud)."""
