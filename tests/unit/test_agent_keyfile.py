"""The agent finds the product's EncryptionKey where the products document it and reports only
its SHA-256: from real sample files (Windows and Linux/Docker forms, BOM, CRLF, comments)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path, PureWindowsPath

import pytest

from collector.agent import keyfile
from collector.agent.cli import default_health_url, default_spool_path

KEY = "37D27A670394F7D82CE57F1F07D69747"
FINGERPRINT = hashlib.sha256(KEY.encode()).hexdigest()

# As the Inedo Hub writes it on Windows: declaration, CRLF line ends.
WINDOWS_CONFIG = (
    '<?xml version="1.0" encoding="utf-8"?>\r\n'
    "<InedoAppConfig>\r\n"
    "  <ConnectionString>Data Source=localhost\\INEDO; Initial Catalog=ProGet;"
    " Integrated Security=True;</ConnectionString>\r\n"
    f"  <EncryptionKey>{KEY}</EncryptionKey>\r\n"
    '  <WebServer Enabled="true" Urls="http://*:8624/" />\r\n'
    "</InedoAppConfig>\r\n"
)


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_the_windows_shared_config_gives_the_sha256_of_the_key(tmp_path):
    found = keyfile.find(write(tmp_path / "ProGet.config", WINDOWS_CONFIG), environ={})
    assert found.value == FINGERPRINT
    assert found.product == "ProGet"
    assert KEY not in repr(found)


def test_a_bom_and_crlf_as_notepad_saves_them_change_nothing(tmp_path):
    path = write(tmp_path / "BuildMaster.config", b"\xef\xbb\xbf" + WINDOWS_CONFIG.encode())
    found = keyfile.find(path, environ={})
    assert (found.value, found.product) == (FINGERPRINT, "BuildMaster")


def test_a_utf16_file_notepads_unicode_is_read_too(tmp_path):
    text = WINDOWS_CONFIG.replace("utf-8", "utf-16")
    found = keyfile.find(write(tmp_path / "Otter.config", text.encode("utf-16")), environ={})
    assert found.value == FINGERPRINT


def test_a_commented_out_key_is_not_the_key(tmp_path):
    config = (
        "<InedoAppConfig>\n"
        "  <!-- the old key, kept for reference:\n"
        "  <EncryptionKey>00000000000000000000000000000000</EncryptionKey> -->\n"
        f"  <EncryptionKey>\n    {KEY}\n  </EncryptionKey>\n"
        "</InedoAppConfig>\n"
    )
    assert keyfile.find(write(tmp_path / "ProGet.config", config), environ={}).value == FINGERPRINT


def test_a_config_whose_only_key_is_commented_out_has_none(tmp_path):
    config = f"<InedoAppConfig><!-- <EncryptionKey>{KEY}</EncryptionKey> --></InedoAppConfig>"
    with pytest.raises(keyfile.KeyNotFound, match="no <EncryptionKey> element") as caught:
        keyfile.find(write(tmp_path / "ProGet.config", config), environ={})
    assert KEY not in str(caught.value)


def test_a_missing_key_is_a_clear_error_naming_the_file(tmp_path):
    path = write(tmp_path / "ProGet.config", WINDOWS_CONFIG.replace(f"<EncryptionKey>{KEY}", "<X>"))
    path.write_text(path.read_text().replace("</EncryptionKey>", "</X>"))
    with pytest.raises(keyfile.KeyNotFound) as caught:
        keyfile.find(path, environ={})
    assert str(path) in str(caught.value)
    assert "no <EncryptionKey> element" in str(caught.value)


def test_an_empty_key_element_is_an_error(tmp_path):
    config = "<InedoAppConfig><EncryptionKey>  </EncryptionKey></InedoAppConfig>"
    with pytest.raises(keyfile.KeyNotFound, match="empty <EncryptionKey>"):
        keyfile.find(write(tmp_path / "ProGet.config", config), environ={})


def test_broken_xml_says_where_but_never_shows_the_key(tmp_path):
    config = f"<InedoAppConfig><EncryptionKey>{KEY}</EncryptionKey"  # cut short
    with pytest.raises(keyfile.KeyNotFound, match="not well-formed XML") as caught:
        keyfile.find(write(tmp_path / "ProGet.config", config), environ={})
    assert KEY not in str(caught.value)
    assert "line 1" in str(caught.value)


def test_a_file_that_cannot_be_read_is_an_error(tmp_path):
    with pytest.raises(keyfile.KeyNotFound, match="cannot read"):
        keyfile.find(tmp_path / "ProGet.config", environ={})


def test_a_docker_secret_file_holds_the_key_alone(tmp_path):
    secret = write(tmp_path / "proget_encryption_key", f"\ufeff# rotated 2026-01\r\n{KEY}\r\n\r\n")
    environ = {"PROGET_ENCRYPTION_KEY_FILE": str(secret)}
    found = keyfile.find(None, environ=environ, windows=False)
    assert (found.value, found.product) == (FINGERPRINT, "ProGet")
    assert "PROGET_ENCRYPTION_KEY_FILE" in found.source


def test_a_key_file_of_several_lines_is_refused_without_quoting_it(tmp_path):
    secret = write(tmp_path / "key", f"{KEY}\nsomething else\n")
    with pytest.raises(keyfile.KeyNotFound, match="holds the key alone") as caught:
        keyfile.find(secret, environ={})
    assert KEY not in str(caught.value)


def test_the_environment_variable_wins_over_the_file_as_in_the_products(tmp_path, monkeypatch):
    monkeypatch.setattr(keyfile, "LINUX_SHARED_CONFIG", tmp_path)
    write(tmp_path / "Otter.config", WINDOWS_CONFIG.replace(KEY, "0" * 32))
    assert keyfile.find(None, environ={}, windows=False).product == "Otter"  # the file alone
    environ = {"OTTER_ENCRYPTION_KEY": f" {KEY}\n"}
    found = keyfile.find(None, environ=environ, windows=False)
    assert (found.value, found.product) == (FINGERPRINT, "Otter")
    assert found.source == "environment variable OTTER_ENCRYPTION_KEY"


def test_both_the_variable_and_its_file_form_are_refused_as_the_products_do(tmp_path):
    environ = {"PROGET_ENCRYPTION_KEY": KEY, "PROGET_ENCRYPTION_KEY_FILE": str(tmp_path / "k")}
    with pytest.raises(keyfile.KeyNotFound, match="only one"):
        keyfile.find(None, environ=environ, windows=False)


def test_the_documented_windows_locations_follow_programdata():
    locations = keyfile.default_locations(True, {"PROGRAMDATA": r"D:\Data"})
    assert locations[0] == ("ProGet", PureWindowsPath(r"D:\Data\Inedo\SharedConfig\ProGet.config"))
    assert [str(p) for _, p in keyfile.default_locations(True, {})] == [
        r"C:\ProgramData\Inedo\SharedConfig\ProGet.config",
        r"C:\ProgramData\Inedo\SharedConfig\BuildMaster.config",
        r"C:\ProgramData\Inedo\SharedConfig\Otter.config",
    ]


def test_the_documented_linux_locations():
    assert [str(p) for _, p in keyfile.default_locations(False, {})] == [
        "/usr/share/Inedo/SharedConfig/ProGet.config",
        "/usr/share/Inedo/SharedConfig/BuildMaster.config",
        "/usr/share/Inedo/SharedConfig/Otter.config",
    ]


def test_nothing_anywhere_says_where_it_looked():
    with pytest.raises(keyfile.KeyNotFound) as caught:
        keyfile.find(None, environ={}, windows=False)
    message = str(caught.value)
    assert "/usr/share/Inedo/SharedConfig/ProGet.config" in message
    assert "PROGET_ENCRYPTION_KEY" in message
    assert "--config-file" in message


def test_the_product_found_picks_its_default_port():
    assert default_health_url("BuildMaster") == "http://localhost:8622"
    assert default_health_url("Otter") == "http://localhost:8626"
    assert default_health_url(None) == "http://localhost:8624"


def test_the_spool_lives_in_the_platforms_data_folder():
    windows = default_spool_path(
        True, {"LOCALAPPDATA": r"C:\Users\svc\AppData\Local"}, PureWindowsPath(r"C:\Users\svc")
    )
    assert str(windows) == r"C:\Users\svc\AppData\Local\clustermon\agent-spool.jsonl"
    assert str(default_spool_path(False, {}, Path("/home/ops"))) == (
        "/home/ops/.local/state/clustermon/agent-spool.jsonl"
    )
    systemd = default_spool_path(False, {"STATE_DIRECTORY": "/var/lib/clustermon-agent"}, Path("/"))
    assert str(systemd) == "/var/lib/clustermon-agent/agent-spool.jsonl"


def test_the_key_is_never_logged(tmp_path, caplog):
    """The agent logs where the fingerprint came from, never the key, at any level."""
    from collector.agent.runner import Agent, Settings

    caplog.set_level(logging.DEBUG, logger="clustermon.agent")
    path = write(tmp_path / "ProGet.config", WINDOWS_CONFIG)
    settings = Settings("http://127.0.0.1:9", "web01", "http://127.0.0.1:9/health", path)
    runner = Agent(settings, None, None, None, None, monotonic=lambda: 0.0)  # type: ignore[arg-type]
    assert runner._fingerprint() == FINGERPRINT
    assert str(path) in caplog.text
    assert KEY not in caplog.text
