"""deploymentcontroller (cloud)."""
from services.deploymentcontroller.service import main

main()
