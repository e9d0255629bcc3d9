from augstudy.cli import main

main()
