"""What the workload controllers share: the level-triggered controller runtime (watch, cache,
work queue, write-through writes), and pure helpers for owner references, pods made from
templates and their readiness, and template hashes and ControllerRevisions."""
