"""One hall over several app servers: the shared presentation hub (kdviz.present.remote.RayHub) against a local Ray.
Two RayHub objects are two replicas: what one starts, the other follows, and the lecturer's check holds across."""
from __future__ import annotations

import pytest

from kdviz.present import NotPresenter, PresenterCannotGuess, View

ray = pytest.importorskip("ray", reason="needs Ray (pip install -r requirements.txt)")

LECTURER, STUDENT, OTHER = "a" * 32, "b" * 32, "c" * 32


@pytest.fixture(scope="module")
def replicas():
    """Two replicas' hubs on one local Ray (in the test process; a real replica is its own process)."""
    from kdviz.present.remote import RayHub

    first = RayHub(address="local", num_cpus=1, object_store_memory=80 * 2**20)
    second = RayHub()  # the same named actor: get_if_exists
    yield first, second
    first.shutdown()
    ray.shutdown()


def test_a_presentation_started_on_one_replica_is_followed_and_moved_through_another(replicas):
    a, b = replicas
    room = a.start(LECTURER, View(step=2))
    assert b.get(room.code) == room and b.poll_dict(room.code.lower(), 0)["view"]["step"] == 2
    b.move(room.code, LECTURER, step=5, temperature=10.0)  # the lecturer's browser landed on the other replica
    assert a.get(room.code).view.step == 5 and a.poll(room.code, room.version).changed
    assert a.presenting(LECTURER).code == b.presenting(LECTURER).code == room.code
    with pytest.raises(NotPresenter):  # the same check, whichever replica is asked
        b.move(room.code, STUDENT, step=9)
    assert a.get(room.code).view.step == 5
    a.end(room.code, LECTURER)


def test_guesses_from_both_replicas_meet_in_one_histogram(replicas):
    a, b = replicas
    room = a.start(OTHER, View(step=4))
    a.ask(room.code, OTHER, "student-pick")
    a.guess(room.code, LECTURER, "student-pick", "cat")
    b.guess(room.code, STUDENT, "student-pick", "dog")
    assert sorted(b.guesses(room.code, "student-pick")) == ["cat", "dog"]
    assert a.my_guess(room.code, STUDENT, "student-pick") == "dog"
    with pytest.raises(PresenterCannotGuess):
        b.guess(room.code, OTHER, "student-pick", "cat")
    b.end(room.code, OTHER)
    assert a.poll_dict(room.code, 0)["state"] == "ended" and a.guesses(room.code, "student-pick") == []


def test_an_unknown_method_is_refused_and_bad_input_keeps_its_type(replicas):
    a, _ = replicas
    with pytest.raises(AttributeError):
        a.delete_everything()
    room = a.start(LECTURER, View(step=1))
    with pytest.raises(ValueError, match="step"):  # checked in the actor, raised here as the same type
        a.move(room.code, LECTURER, step=0)
    a.end(room.code, LECTURER)


def test_the_server_setting_picks_the_shared_hub(replicas, monkeypatch):
    from kdviz.present import hub, remote, reset_hub
    from kdviz.present.rooms import Hub

    for value, kind in (("ray", remote.RayHub), ("process", Hub), ("", Hub)):
        monkeypatch.setenv("KDVIZ_PRESENT_HUB", value)
        reset_hub()
        assert type(hub()) is kind
    monkeypatch.setenv("KDVIZ_PRESENT_HUB", "redis")
    reset_hub()
    with pytest.raises(ValueError, match="KDVIZ_PRESENT_HUB must be process or ray, got 'redis'"):
        hub()
    reset_hub()
