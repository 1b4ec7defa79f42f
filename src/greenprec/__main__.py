from greenprec.cli import main

main()
