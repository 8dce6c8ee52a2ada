from services.edged.service import main

main()
