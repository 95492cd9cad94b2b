"""The read side: the pure cluster-view fold, staleness and sync rules, runners, snapshots."""
