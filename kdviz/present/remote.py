"""One hub for a hall spread over several app servers: the same Hub, kept in a named Ray actor that every replica
reaches (KDVIZ_PRESENT_HUB=ray). A presentation started through replica A is then followed and moved through
replica B; the lecturer's identity check, the time-outs and the guesses are the Hub's own code, run in one place.

The actor is detached (it outlives the replica that made it: a replica's restart keeps the hall's presentations) and
single-threaded (its calls are serialised, as the in-process hub's lock serialises them). Each call costs a Ray round
trip, about a millisecond: still a fraction of the ≤ 5 ms a follower's poll may cost. Exceptions raised in the actor
reach the caller as the same types (NotPresenter, TooManyPresentations, ValueError ...), so pages handle both hubs
alike.
"""
from __future__ import annotations

ACTOR_NAME = "kdviz-presentations"
# The Hub's public methods a replica calls; each becomes a round trip to the actor.
METHODS = ("start", "presenting", "move", "ask", "reveal", "end", "get", "poll", "poll_dict", "guess", "guesses",
           "my_guess", "expire")


class RayHub:
    """A Hub's methods, each forwarded to the hall's shared hub actor (made on first use with `settings`)."""

    remote = True  # kdviz.routes calls it off the event loop: a Ray round trip blocks

    def __init__(self, settings=None, address: str | None = None, **init_kwargs):
        from kdviz.core.cluster import connect

        self._ray = connect(address, **init_kwargs)
        self._actor = _actor_class(self._ray).options(
            name=ACTOR_NAME, lifetime="detached", get_if_exists=True, num_cpus=0, max_restarts=0).remote(settings)
        self.settings = self._ray.get(self._actor.hub_settings.remote())

    def __getattr__(self, name: str):
        if name not in METHODS:
            raise AttributeError(name)
        ray, method = self._ray, getattr(self._actor, name)

        def call(*args, **kwargs):
            return ray.get(method.remote(*args, **kwargs))
        call.__name__ = name
        return call

    def shutdown(self) -> None:
        """Kill the shared actor (tests; an operator ends a hall by stopping its Ray cluster)."""
        self._ray.kill(self._actor)


def _actor_class(ray):
    from kdviz.present.rooms import Hub

    @ray.remote
    class PresentationHub(Hub):
        """kdviz.present.rooms.Hub as a Ray actor (its methods are the actor's)."""

        def __init__(self, settings=None):
            super().__init__(settings)

        def hub_settings(self):  # an actor's attributes cannot be read from outside: a method can
            return self.settings

    return PresentationHub
