"""`python -m collector.agent`: the agent without the rest of clustermon's command line."""

from collector.agent.cli import main

main()
