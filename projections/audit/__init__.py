"""The audit: outage and failover episodes, explanations, what-if replays, a component's
history and the availability reports, all folded from the log."""
