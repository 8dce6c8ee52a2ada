"""Identity: the cloud's trust material, node credentials, bootstrap tokens, and the
permissions of each role (enforced by nats-server; see docs/security.md)."""
