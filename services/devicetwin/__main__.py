from services.devicetwin.service import main

main()
