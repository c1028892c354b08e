from seagull_edge.cli import main

main()
