from services.cloudhub.service import main

main()
