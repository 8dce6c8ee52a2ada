from services.devicecontroller.service import main

main()
