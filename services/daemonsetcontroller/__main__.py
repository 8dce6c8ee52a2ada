"""daemonsetcontroller (cloud)."""
from services.daemonsetcontroller.service import main

main()
