"""Browser identities: signed by the server, minted at most N an hour per client address, the address read from a
trusted proxy's X-Forwarded-For only, and an identity provider's user in place of the cookie."""
from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kdviz.core import identity
from kdviz.runs.settings import server_settings
from kdviz.core.identity import IdentityLedger, client_address, parse_trusted_proxies

APP = str(Path(__file__).resolve().parents[1] / "app.py")
LIVE = "pages/live_distillation.py"
CLIENT = "203.0.113.9"  # TEST-NET-3: a student's public address


# ---- signed identities -----------------------------------------------------------------------------------------

def test_only_identities_this_server_minted_are_accepted(tmp_path):
    minted = identity.new_identity()
    assert identity.is_identity(minted) and len(minted) == 64
    assert not identity.is_identity(secrets.token_hex(32))  # made up: right shape, no signature
    assert not identity.is_identity(secrets.token_hex(16))  # an old, unsigned 32-digit cookie
    assert not identity.is_identity(minted[:-1] + ("0" if minted[-1] != "0" else "1"))
    assert not identity.is_identity(identity.new_identity(tmp_path))  # another server's (another KDVIZ_HOME)
    assert not identity.is_identity(None) and not identity.is_identity(minted.upper())


def test_a_logged_in_users_identity_is_stable_and_never_a_cookies():
    one = identity.user_identity("https://accounts.example.org", "user-42")
    assert one == identity.user_identity("https://accounts.example.org", "user-42")
    assert one != identity.user_identity("https://accounts.example.org", "user-43")
    assert one != identity.user_identity("https://other.example.org", "user-42")
    assert not identity.is_identity(one) and identity.user_identity("https://x", "") is None


# ---- client addresses ------------------------------------------------------------------------------------------

LOCAL_PROXY = parse_trusted_proxies("127.0.0.1")


def test_the_forwarded_address_counts_only_behind_a_trusted_proxy():
    assert client_address(CLIENT, None, ()) == CLIENT
    assert client_address(CLIENT, "198.51.100.1", ()) == CLIENT  # a browser cannot name itself someone else
    assert client_address(CLIENT, "198.51.100.1", LOCAL_PROXY) == CLIENT  # a header from an untrusted peer
    assert client_address(None, f"{CLIENT}", LOCAL_PROXY) == CLIENT  # HAProxy on this machine (peer loopback)
    assert client_address(None, None, ()) is None  # this machine itself: its operator, uncapped
    assert client_address(None, f"{CLIENT}", ()) is None  # a proxy nobody configured: every client looks local


def test_the_client_is_the_first_untrusted_address_from_the_right():
    # the client may write anything into the header; the proxy appends what it saw, so only the right end counts
    assert client_address(None, f"6.6.6.6, {CLIENT}", LOCAL_PROXY) == CLIENT
    chain = parse_trusted_proxies("127.0.0.1, 10.0.0.0/8")
    assert client_address(None, f"6.6.6.6, {CLIENT}, 10.1.2.3", chain) == CLIENT
    assert client_address(None, "127.0.0.1", LOCAL_PROXY) is None  # a browser on the server's machine, proxied
    assert client_address("10.1.2.3", "not-an-address", chain) == "10.1.2.3"  # garbage: the proxy's own address
    assert client_address(None, "2001:db8::7", LOCAL_PROXY) == "2001:db8::7"


def test_a_bad_trusted_proxies_setting_names_the_setting_and_the_entry(monkeypatch):
    monkeypatch.setenv("KDVIZ_TRUSTED_PROXIES", "127.0.0.1, proxy.local")
    with pytest.raises(ValueError, match=r"KDVIZ_TRUSTED_PROXIES: 'proxy.local' is not an IP address or network"):
        server_settings()
    monkeypatch.setenv("KDVIZ_TRUSTED_PROXIES", "127.0.0.1 10.0.0.0/8")
    monkeypatch.setenv("KDVIZ_MAX_IDENTITIES_PER_ADDRESS", "none")
    settings = server_settings()
    assert settings.trusted_proxies == "127.0.0.1 10.0.0.0/8" and settings.max_identities_per_address is None


# ---- the ledger ------------------------------------------------------------------------------------------------

def test_an_address_gets_at_most_limit_identities_an_hour():
    ledger = IdentityLedger(2, window_s=3600)
    first, second = ledger.mint(CLIENT, now=0), ledger.mint(CLIENT, now=10)
    assert identity.is_identity(first) and identity.is_identity(second) and first != second
    assert ledger.mint(CLIENT, now=20) is None
    assert ledger.wait_s(CLIENT, now=20) == pytest.approx(3580)  # when the first leaves the window
    assert ledger.mint("198.51.100.1", now=20) is not None  # another address is not held up
    assert ledger.mint(None, now=20) is not None  # this machine is never refused
    assert ledger.mint(CLIENT, now=3600) is not None  # the first one left the window
    assert IdentityLedger(None).mint(CLIENT) is not None


def test_the_ledger_forgets_the_least_recently_seen_addresses():
    ledger = IdentityLedger(1, max_addresses=3)
    for index in range(10):
        assert ledger.mint(f"198.51.100.{index}", now=index) is not None
    assert ledger.addresses() == 3
    assert ledger.mint("198.51.100.9", now=11) is None  # recent ones are still counted


def test_a_halls_replicas_share_one_count_per_address(tmp_path):
    """Behind a load balancer a fresh private window lands on any replica: the cap holds across them."""
    one, two = (IdentityLedger(2, path=tmp_path / "identity_mints.sqlite3") for _ in range(2))
    assert one.mint(CLIENT, now=0) is not None and two.mint(CLIENT, now=1) is not None
    assert one.mint(CLIENT, now=2) is None and two.mint(CLIENT, now=2) is None
    assert two.wait_s(CLIENT, now=2) == pytest.approx(3598)


# ---- the app ---------------------------------------------------------------------------------------------------

@pytest.fixture
def hall_address(monkeypatch):
    """Every session of the test comes from one public address, with one new identity an hour allowed there."""
    from kdviz import ui
    from kdviz.runs import tasks
    from kdviz.ui import core

    monkeypatch.setenv("KDVIZ_MAX_IDENTITIES_PER_ADDRESS", "1")
    monkeypatch.setattr(core, "_request_origin", lambda: (CLIENT, None))
    core.access.clear()
    ui.run_manager.clear()
    yield
    ui.run_manager().shutdown()
    ui.run_manager.clear()  # the next module's pages get a live manager, not this shut-down one
    tasks.stop_all_tasks()
    tasks._tasks.clear()  # nor a cancelled default teacher (a page retries it only after 10 s)
    core.access.clear()


def live_page(identity_of: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if identity_of:
        at.session_state["owner_id"] = identity_of  # the same browser: its cookie
    at.switch_page(LIVE).run()  # before the first run, as a link opens it: the home page's teacher never starts
    at.selectbox(key="preset").set_value("quick").run()
    return at


def start_run(at: AppTest) -> AppTest:
    next(b for b in at.button if "Start run" in b.label).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_fresh_browser_over_its_addresses_cap_starts_no_run_and_is_told_why(hall_address):
    from kdviz import ui

    first = start_run(live_page())
    assert first.query_params.get("run") and not first.error
    second = start_run(live_page())  # a private window at the same address
    errors = " ".join(e.value for e in second.error)
    assert "max_identities_per_address" in errors and "browser you used here before" in errors
    assert not second.query_params.get("run")
    assert len(ui.run_manager().list_runs(first.session_state["owner_id"])) == 1
    assert second.session_state["owner_id"] != first.session_state["owner_id"]
    again = start_run(live_page(identity_of=first.session_state["owner_id"]))  # the first browser, reloaded
    assert again.query_params.get("run") and not again.error


def test_a_logged_in_user_is_one_identity_on_every_browser_and_is_not_capped(hall_address, monkeypatch):
    import streamlit

    class User(dict):
        is_logged_in = True

    monkeypatch.setattr(streamlit, "user", User(iss="https://accounts.example.org", sub="student-7"))
    one, two = start_run(live_page()), start_run(live_page())
    assert one.session_state["owner_id"] == two.session_state["owner_id"] == \
        identity.user_identity("https://accounts.example.org", "student-7")
    assert one.query_params.get("run") and two.query_params.get("run") and not two.error


def test_a_ledger_whose_folder_went_lets_browsers_in_instead_of_failing_the_page(tmp_path):
    import shutil

    folder = tmp_path / "home"
    ledger = IdentityLedger(1, path=folder / "identity_mints.sqlite3")
    assert ledger.mint(CLIENT, now=0) is not None
    shutil.rmtree(folder)  # a removed KDVIZ_HOME (or a full disk): the count cannot be written
    assert ledger.mint("198.51.100.7", now=1) is not None and ledger.wait_s(CLIENT, now=1) >= 0
