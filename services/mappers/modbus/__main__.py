from services.mappers.modbus.service import main

main()
