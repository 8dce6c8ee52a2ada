"""nodegroupcontroller (cloud)."""
from services.nodegroupcontroller.service import main

main()
