from services.edgemesh.service import main

main()
