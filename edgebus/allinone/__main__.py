from edgebus.allinone.host import main

main()
