from regops.cli import main

main()
