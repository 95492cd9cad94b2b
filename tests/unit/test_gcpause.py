import gc
import threading

from projections.readmodel.gcpause import collector_paused


def test_the_collector_is_paused_inside_and_enabled_again_by_the_last_one_out():
    assert gc.isenabled()
    entered, release = threading.Event(), threading.Event()

    def other_request():
        with collector_paused():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=other_request)
    with collector_paused():
        thread.start()
        assert entered.wait(5)
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other request is still building
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_error_inside_still_enables_the_collector():
    try:
        with collector_paused():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()
