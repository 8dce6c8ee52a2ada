"""endpointcontroller: Endpoints computed from Services and pod readiness (cloud)."""
