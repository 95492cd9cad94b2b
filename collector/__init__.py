"""Collection: the /health poller (run by the leading scheduler) and, in `collector.agent`, the
on-node agent. Neither knows about Flask."""
