from services.mappers.opcua.service import main

main()
