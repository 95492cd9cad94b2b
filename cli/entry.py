"""The `clustermon` console script. `clustermon agent` runs on product servers (most of them
Windows machines) and needs none of the server's parts, so it is started before anything of the
server is imported; every other command goes to the server's command line (cli/main.py)."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["agent"]:
        from collector.agent.cli import agent

        agent.main(args=sys.argv[2:], prog_name="clustermon agent")
        return
    from cli.main import main as server_main

    server_main()
