"""cronjobcontroller (cloud)."""
from services.cronjobcontroller.service import main

main()
