"""Apprise, imported once the way this project needs it.

Apprise's mail plugin imports the standard `imghdr`, deprecated since Python 3.11: it is
imported first with that one warning silenced, so that loading Apprise's plugins never fails
where warnings are errors (the test suite) and never prints the warning elsewhere. Import
`apprise` from here, never directly.
"""

import contextlib
import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*imghdr", category=DeprecationWarning)
    with contextlib.suppress(ImportError):  # Python 3.13 removed it: Apprise has a stand-in
        import imghdr  # noqa: F401

import apprise
from apprise.plugins.email import NotifyEmail

__all__ = ["NotifyEmail", "apprise"]
