"""garbagecollector (cloud)."""
from services.garbagecollector.service import main

main()
