"""The fair queue: who starts next (each owner's k-th waiting run waits for everyone's (k-1)-th), and how many runs one
browser, one network address and the whole server may have waiting or running."""
from __future__ import annotations

import collections


class QueueFull(ValueError):
    """More runs were asked for than the server accepts; the message says how many are allowed."""



def fair_order(waiting: list[str], runs: dict) -> list[str]:
    """The waiting run ids in the order they will start (runs: the live runs by id; call with the manager's lock
    held): each owner's k-th waiting run is in round k (+1 per run of theirs already running), oldest submission
    first within a round."""
    running = collections.Counter(run.owner for run in runs.values() if run.state == "running")
    rank: collections.Counter = collections.Counter()
    keyed = []
    for run_id in sorted(waiting, key=lambda r: runs[r].seq):
        run = runs[run_id]
        keyed.append((rank[run.owner] + running[run.owner], run.seq, run_id))
        rank[run.owner] += 1
    return [run_id for *_, run_id in sorted(keyed)]


def check_room(settings, waiting: int, live, owner: str, address: str | None, asked: int) -> None:
    """QueueFull, saying which cap and what to do, unless `asked` more runs of owner (from address) fit the server's
    caps (settings: a ServerSettings; waiting: the runs in the queue; live: the live runs; the manager's lock held)."""
    if waiting + asked > settings.max_queued:
        raise QueueFull(f"the server has {waiting} runs waiting and takes at most {settings.max_queued}; try again "
                        "when some finish")
    mine = sum(run.owner == owner for run in live)
    if mine + asked > settings.max_live_per_browser:
        raise QueueFull(_cap_message("you have", mine, asked, settings.max_live_per_browser, "per browser"))
    if address:
        here = sum(run.address == address for run in live)
        if here + asked > settings.max_live_per_address:
            raise QueueFull(_cap_message("your network address has", here, asked, settings.max_live_per_address,
                                         "per address"))


def _cap_message(who: str, current: int, asked: int, limit: int, scope: str) -> str:
    wanted = f"{asked} more" if asked > 1 else "another"
    return (f"{who} {current} runs waiting or running and asked for {wanted}; this server allows at most {limit} "
            f"{scope} at once. Stop one, or wait until some finish.")
