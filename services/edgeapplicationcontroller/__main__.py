"""edgeapplicationcontroller (cloud)."""
from services.edgeapplicationcontroller.service import main

main()
