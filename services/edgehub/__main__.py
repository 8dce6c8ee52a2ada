from services.edgehub.service import main

main()
