"""Retention: archive a prefix of the log to files anyone can read, verify them, restore them.

- `jsonl.py`: one archive file, gzip'd JSON Lines of the rows as stored;
- `manifest.py`: `manifest.json`, what an archive holds and the checksum of each file;
- `durable.py`: writing a file so that a crash leaves either nothing or the whole file;
- `verify.py`: reading an archive back against its manifest;
- `archive.py`: the archive run (files, manifest, boundary snapshot, then the delete);
- `restore.py`: an archive back into the log, positions preserved.

It sits beside collector/ and notify/: it uses the store's retention operations
(eventstore/retention.py) and the read model's boundary snapshot; the CLI and the scheduler
call it.
"""
