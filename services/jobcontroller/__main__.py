"""jobcontroller (cloud)."""
from services.jobcontroller.service import main

main()
