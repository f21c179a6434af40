"""What kdviz stores instead of a browser's identity (a secret the browser keeps): a salted hash of it."""
from __future__ import annotations

import hashlib


def owner_key(identity: str) -> str:
    """What a run or a presentation records as its owner: a hash of the caller's identity (the identity itself is a
    secret that never leaves the browser's cookie and the server's memory)."""
    return hashlib.sha256(f"kdviz-owner:{identity}".encode()).hexdigest()[:32]
