"""Scheduler jobs: timeout sweep, snapshots, reports; leader election."""
