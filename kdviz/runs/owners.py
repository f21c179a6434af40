"""Who may do what to a run: its owner (the hash of a browser's identity, kdviz.core.identity) controls it, everyone
else may only view it."""
from __future__ import annotations

from kdviz.core.identity import owner_key


class NotYours(PermissionError):
    """A caller tried to change someone else's run; the message says so (the run is theirs to view only)."""



def owns(run, caller: str | None) -> bool:
    """Whether caller (an identity) controls this run."""
    return run is not None and bool(caller) and run.owner == owner_key(caller)


def check_mine(run, run_id: str, caller: str, doing: str):
    """The run (None when there is none) if caller owns it; else NotYours saying what they may not do."""
    if run is not None and not owns(run, caller):
        raise NotYours(f"run {run_id} belongs to someone else: you can view it but not {doing} it")
    return run
