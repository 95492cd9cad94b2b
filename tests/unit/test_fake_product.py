"""The fake product servers that `run --simulate` and the collector's benchmark poll."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from collector import fake_product
from collector.fake_product import FakeProducts, serve_in_thread, target_url


class Ticks:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_start_serves_each_name_at_its_own_path_with_the_documented_example():
    base, stop = fake_product.start(["proget01", "proget 02"])
    try:
        for name in ("proget01", "proget 02"):
            answer = httpx.get(target_url(base, name) + "/health")
            assert answer.status_code == 200
            assert answer.json() == fake_product.example("ProGet")
            assert answer.headers["connection"] == "close"  # each fake is another machine
        assert httpx.get(base + "/nobody/health").status_code == 404
    finally:
        stop()


def test_products_are_cycled_over_the_names():
    fakes = FakeProducts(["a", "b", "c"], products=("ProGet", "BuildMaster", "Otter"))
    assert [fakes.document(n)["applicationName"] for n in "abc"] == [
        "ProGet",
        "BuildMaster",
        "Otter",
    ]
    with pytest.raises(ValueError, match="unknown products"):
        FakeProducts(["a"], products=("Nexus",))


def test_the_last_server_reports_its_service_in_error_after_the_delay():
    ticks = Ticks()
    fakes = FakeProducts(["a", "b"], error_after=60, monotonic=ticks)
    base, stop = serve_in_thread(fakes)
    try:
        assert httpx.get(target_url(base, "b") + "/health").json()["serviceStatus"] == "OK"
        ticks.now += 60
        document = httpx.get(target_url(base, "b") + "/health").json()
        assert (document["serviceStatus"], document["serviceStatusDetail"]) == (
            "Error",
            fake_product.SERVICE_ERROR_DETAIL,
        )
        assert httpx.get(target_url(base, "a") + "/health").json()["serviceStatus"] == "OK"
    finally:
        stop()


def test_it_runs_as_a_process_that_prints_its_base_url():
    process = subprocess.Popen(
        [sys.executable, "-m", "collector.fake_product", "--servers", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base = process.stdout.readline().strip()
        answer = httpx.get(base + "/fake-0002/health", timeout=5)
        assert answer.json()["applicationName"] == "ProGet"
    finally:
        process.terminate()
        assert process.wait(10) == 0
        process.stdout.close()
