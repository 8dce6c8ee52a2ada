from services.metamanager.service import main

main()
