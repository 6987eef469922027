from faceval.cli import main

main()
