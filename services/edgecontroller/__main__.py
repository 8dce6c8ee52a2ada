from services.edgecontroller.service import main

main()
