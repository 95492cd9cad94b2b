"""Find the product's EncryptionKey and turn it into the fingerprint a heartbeat carries.

Where the products keep it (Inedo's "Installation Configuration Files" and "Supported
Environment Variables" pages):

- Windows: `%PROGRAMDATA%\\Inedo\\SharedConfig\\<Product>.config`, an XML file
  `<InedoAppConfig><EncryptionKey>32 hex characters</EncryptionKey>...</InedoAppConfig>`
  (ProGet 5.1+, BuildMaster 6.0.7+, Otter 2.0.9+).
- Linux and Docker: the same file under `/usr/share/Inedo/SharedConfig/`, or the environment
  variables `<PRODUCT>_ENCRYPTION_KEY` (the key) and `<PRODUCT>_ENCRYPTION_KEY_FILE` (the path of
  a file holding only the key: a Docker secret). The products let a variable override the file,
  and so does this module.

The key itself never leaves this module: it is hashed as soon as it is read, and no message,
log line or exception here contains it (nor any line of the file it came from).
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

PRODUCTS = ("ProGet", "BuildMaster", "Otter")
# The port each product's integrated web server listens on by default (Inedo Hub).
DEFAULT_PORTS = {"ProGet": 8624, "BuildMaster": 8622, "Otter": 8626}
LINUX_SHARED_CONFIG = PurePosixPath("/usr/share/Inedo/SharedConfig")
WINDOWS_PROGRAMDATA = r"C:\ProgramData"
MAX_CONFIG_BYTES = 1 << 20  # a configuration file is a few hundred bytes


class KeyNotFound(Exception):
    """No EncryptionKey where it was looked for, or a file that cannot be read as one. The
    message says where and why, never what the file holds."""


@dataclass(frozen=True)
class Fingerprint:
    """The SHA-256 (hex) of a key, and where the key was found (for messages)."""

    value: str
    source: str
    product: str | None


def fingerprint(key: str) -> str:
    """SHA-256, hex, of the key's value as written (surrounding white space removed): what
    anyone can compute with `sha256sum` to check what a server reports."""
    return hashlib.sha256(key.strip().encode("utf-8")).hexdigest()


def default_locations(windows: bool, environ: Mapping[str, str]) -> list[tuple[str, PurePath]]:
    """Each product's shared configuration file where the products document it, in the order
    looked at. Pure (Windows paths are PureWindowsPath): tested on any platform."""
    if windows:
        programdata = PureWindowsPath(environ.get("PROGRAMDATA") or WINDOWS_PROGRAMDATA)
        folder: PurePath = programdata / "Inedo" / "SharedConfig"
    else:
        folder = LINUX_SHARED_CONFIG
    return [(product, folder / f"{product}.config") for product in PRODUCTS]


def environment_names(product: str) -> tuple[str, str]:
    """The variables holding the key and the path of a file holding it (e.g. Docker)."""
    prefix = product.upper()
    return f"{prefix}_ENCRYPTION_KEY", f"{prefix}_ENCRYPTION_KEY_FILE"


def find(
    config_file: Path | None,
    environ: Mapping[str, str] | None = None,
    windows: bool | None = None,
) -> Fingerprint:
    """The fingerprint of the EncryptionKey: from `config_file` when given (a product's XML
    configuration file, or a file holding only the key); otherwise from the products'
    environment variables, then from their documented configuration files. KeyNotFound
    saying where it looked when there is none."""
    environ = os.environ if environ is None else environ
    windows = os.name == "nt" if windows is None else windows
    if config_file is not None:
        return _from_file(Path(config_file), _product_of(config_file))
    for product in PRODUCTS:
        found = _from_environment(product, environ)
        if found is not None:
            return found
    looked = []
    for product, location in default_locations(windows, environ):
        path = Path(location)
        if path.is_file():
            return _from_file(path, product)
        looked.append(str(location))
    variables = ", ".join(name for p in PRODUCTS for name in environment_names(p))
    raise KeyNotFound(
        f"no product configuration file found (looked for {', '.join(looked)}) and none of"
        f" {variables} is set: pass --config-file"
    )


def _from_environment(product: str, environ: Mapping[str, str]) -> Fingerprint | None:
    direct, indirect = environment_names(product)
    if environ.get(direct) and environ.get(indirect):
        # What the products themselves refuse: say so rather than pick one.
        raise KeyNotFound(f"both {direct} and {indirect} are set; the products allow only one")
    if environ.get(direct):
        key = environ[direct].lstrip("\ufeff").strip()
        if not key:
            raise KeyNotFound(f"{direct} is set but blank")
        return Fingerprint(fingerprint(key), f"environment variable {direct}", product)
    if environ.get(indirect):
        return _from_file(Path(environ[indirect]), product, via=indirect)
    return None


def _from_file(path: Path, product: str | None, via: str | None = None) -> Fingerprint:
    where = f"{path} (from {via})" if via else str(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise KeyNotFound(f"cannot read {where}: {reason}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise KeyNotFound(f"{where} is larger than a configuration file can be (1 MB)")
    key = _key_in(raw, where)
    return Fingerprint(fingerprint(key), where, product)


def _key_in(raw: bytes, where: str) -> str:
    """The key in a file's bytes: the EncryptionKey element of an XML configuration file, or
    the one line of a key file. UTF-8 with or without a BOM, any line ends; XML comments and,
    in a key file, lines starting with `#` are not the key."""
    text_start = raw.lstrip(b"\xef\xbb\xbf").lstrip()
    # Notepad's "Unicode" is UTF-16 with a BOM: the XML parser reads it as it is.
    if text_start.startswith(b"<") or raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _key_in_xml(raw, where)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise KeyNotFound(f"{where} is neither XML nor UTF-8 text") from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise KeyNotFound(f"{where} holds no EncryptionKey (the file is blank)")
    if len(lines) > 1:
        raise KeyNotFound(
            f"{where} is not XML and has {len(lines)} lines: a key file holds the key alone"
        )
    return lines[0]


def _key_in_xml(raw: bytes, where: str) -> str:
    try:
        # Bytes, so that the XML declaration's encoding and a BOM are honoured; comments are
        # dropped by the parser, so a commented-out key is not taken.
        root = ElementTree.fromstring(raw)
    except ElementTree.ParseError as exc:
        # ParseError says only where ("line 3, column 4"), never what the file holds.
        raise KeyNotFound(f"{where} is not well-formed XML ({exc})") from None
    for element in root.iter():
        if _local_name(element.tag) == "EncryptionKey":
            key = (element.text or "").strip()
            if not key:
                raise KeyNotFound(f"{where} has an empty <EncryptionKey> element")
            return key
    raise KeyNotFound(
        f"{where} has no <EncryptionKey> element (it is optional: without one the product"
        " stores its secrets unencrypted, and there is no key to compare)"
    )


def _local_name(tag: object) -> str:
    """An element's name without an XML namespace (`{uri}EncryptionKey`)."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _product_of(path: Path | PurePath) -> str | None:
    """The product a configuration file belongs to, by its documented name (ProGet.config)."""
    stem = PurePath(path).name.split(".")[0].lower()
    return next((p for p in PRODUCTS if p.lower() == stem), None)
