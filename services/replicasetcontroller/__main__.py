"""replicasetcontroller: keeps each ReplicaSet's pods at its replicas (cloud)."""
from services.replicasetcontroller.service import main

main()
