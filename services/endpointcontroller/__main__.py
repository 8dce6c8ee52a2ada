from services.endpointcontroller.service import main

main()
