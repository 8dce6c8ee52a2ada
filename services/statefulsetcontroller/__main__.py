"""statefulsetcontroller (cloud)."""
from services.statefulsetcontroller.service import main

main()
