"""`clustermon agent`: runs on a ProGet, BuildMaster or Otter server and posts that server's
heartbeats, with the facts only the machine itself knows (OS, IP, the fingerprint of the
product's EncryptionKey), keeping what it could not deliver in a local spool.

It is installed and run on the product servers, most of them Windows machines, so this package
imports only the standard library, httpx, click, orjson and `collector.health`: never the
server's own packages or dependencies (Flask, SQLAlchemy, gunicorn, gevent, ...), and nothing
POSIX-only.
"""
