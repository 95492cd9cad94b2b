"""`python -m cli …`: the `clustermon` command (how clustermon starts its own child processes)."""

from cli.entry import main

main()
