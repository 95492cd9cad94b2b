"""The read model: the runner that folds the log into the read tables (checkpoint in the same
transaction), the current view and its renderer, snapshots, time travel and rebuilds. The
live view, a rebuild and time travel use the one fold of domain/state.py."""
