"""The read side: the read model (readmodel/) and the audit (audit/), both folds of the log
with the one fold of domain/state.py."""
