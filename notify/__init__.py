"""Notifications: a follower of the log turns transitions into delivery rows (the log is the
outbox) and a sender delivers them through the channels people already use. Neither knows
about Flask."""
