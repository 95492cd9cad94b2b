"""Real processes under injected failures: the database cut off, locked, full or late."""
