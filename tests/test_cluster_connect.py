"""A Ray cluster that cannot be joined says so within the time-out, naming the setting and what to do; the home
page stays usable."""
from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kdviz.core import cluster

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT_S = 3  # the probe is killed then: each test waits this long, the message is the same


@pytest.fixture
def nowhere(monkeypatch):
    """An address where nothing listens (a port bound and never listened on, so nobody else takes it)."""
    monkeypatch.setattr(cluster, "_refused", {})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def test_an_address_where_nothing_listens_gives_the_operators_message_not_a_hang(nowhere, monkeypatch):
    outcome = {}

    def join():
        try:
            cluster.connect(nowhere, timeout_s=TIMEOUT_S)
        except ValueError as error:
            outcome["error"] = str(error)

    thread = threading.Thread(target=join, daemon=True)
    thread.start()
    thread.join(TIMEOUT_S + 60)  # the probe's start-up and its kill, on a busy machine
    assert not thread.is_alive(), "connect hung past its time-out"
    assert "KDVIZ_RAY_ADDRESS" in outcome["error"] and nowhere in outcome["error"]
    assert "ray start --head" in outcome["error"]
    import ray

    assert not ray.is_initialized()  # nothing was half-joined in this process
    probes = []
    monkeypatch.setattr(cluster, "_probe", lambda *args: probes.append(args))
    with pytest.raises(ValueError, match="KDVIZ_RAY_ADDRESS"):  # remembered: the next page load does not wait
        cluster.connect(nowhere, timeout_s=TIMEOUT_S)
    assert probes == []


def test_a_cluster_that_refuses_the_token_says_how_the_server_gets_it():
    output = ("[2026-01-01 10:00:00] gcs_rpc_client.h:151: Failed to connect to GCS at address 10.0.0.5:6379 "
              "within 5 seconds. InvalidAuthToken: Authentication token is missing or incorrect\n" * 3)
    message = cluster.refusal_message("10.0.0.5:6379", output, 30)
    assert "10.0.0.5:6379" in message and "KDVIZ_RAY_ADDRESS" in message and "token" in message
    assert "RAY_AUTH_TOKEN" in message and "ray get-auth-token" in message and "RAY_AUTH_MODE=token" in message


def test_the_home_page_stays_usable_when_the_cluster_cannot_be_joined(nowhere, monkeypatch):
    from kdviz import ui
    from kdviz.runs import tasks

    monkeypatch.setenv("KDVIZ_EXECUTOR", "ray")
    monkeypatch.setenv("KDVIZ_RAY_ADDRESS", nowhere)
    monkeypatch.setenv("KDVIZ_RAY_CONNECT_TIMEOUT_S", str(TIMEOUT_S))
    ui.run_manager.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT_S + 90).run()
        assert not at.exception, [e.value for e in at.exception]
        errors = " ".join(e.value for e in at.error)
        assert "KDVIZ_RAY_ADDRESS" in errors and nowhere in errors
        assert any("Live distillation" in str(link.proto.label) for link in at.get("page_link"))
        at.switch_page("pages/soft_labels.py").run()  # a page without runs works
        assert not at.exception and not at.error
    finally:
        ui.run_manager.clear()
        tasks.stop_all_tasks()


def test_the_tour_goes_on_alone_when_the_halls_shared_hub_cannot_be_joined(nowhere, monkeypatch):
    """KDVIZ_PRESENT_HUB=ray on a cluster that cannot be joined: the tour says presenting is unavailable and why, and
    Present says so too, instead of a traceback."""
    from kdviz import present

    monkeypatch.setenv("KDVIZ_PRESENT_HUB", "ray")
    monkeypatch.setenv("KDVIZ_RAY_ADDRESS", nowhere)
    monkeypatch.setenv("KDVIZ_RAY_CONNECT_TIMEOUT_S", str(TIMEOUT_S))
    monkeypatch.setenv("KDVIZ_TOUR_RUNS", "off")
    present.reset_hub()
    try:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT_S + 90).run()
        at.switch_page("pages/lecture.py").run()
        assert not at.exception, [e.value for e in at.exception]
        notices = " ".join(m.value for m in [*at.info, *at.warning, *at.error, *at.caption])
        assert "Presenting is unavailable" in notices and "KDVIZ_RAY_ADDRESS" in notices, notices
        next(b for b in at.button if "Present" in b.label).click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("Cannot start a presentation" in e.value and nowhere in e.value for e in at.error)
    finally:
        present.reset_hub()
