"""Browser identities: minted and signed by the server, capped per client address, stored only as a salted hash.

A browser's identity is a secret kept in its cookie. It is signed (an HMAC with a key kept in KDVIZ_HOME, which every
replica of a hall shares), so a made-up cookie is no identity: a new one must be minted by the server, and minting is
capped per client address (IdentityLedger), or a private window, a cleared cookie or a script could mint a fresh
identity per run and get round the per-browser caps and the fair queue. The client address is the connection's, or,
behind a reverse proxy the operator trusts, the one it appends to X-Forwarded-For (client_address).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
import time
from pathlib import Path

IDENTITY_HEX = 64  # 32 hex digits of randomness, then 32 of their signature
MINT_WINDOW_S = 3600.0  # max_identities_per_address counts the identities minted in the last hour
MAX_ADDRESSES = 10_000  # the ledger forgets the least recently seen addresses beyond this many (bounded memory)
_HEX = frozenset("0123456789abcdef")


class IdentityRefused(ValueError):
    """A browser over its address's identity cap asked to start a run; the message says why and what to do."""


def owner_key(identity: str) -> str:
    """What a run or a presentation records as its owner: a hash of the caller's identity (the identity itself is a
    secret that never leaves the browser's cookie and the server's memory)."""
    return hashlib.sha256(f"kdviz-owner:{identity}".encode()).hexdigest()[:32]


# ---- signed identities -----------------------------------------------------------------------------------------

def _key_path(folder: Path | None = None) -> Path:
    from kdviz.core.paths import home

    return Path(folder or home()) / "identity_key"


_keys: dict[Path, bytes] = {}
_keys_lock = threading.Lock()


def signing_key(home: Path | None = None) -> bytes:
    """The server's identity key (KDVIZ_HOME/identity_key, made once, mode 0600): replicas sharing KDVIZ_HOME accept
    each other's identities; deleting it makes every browser's identity a stranger's (their runs stay, uncontrolled)."""
    path = _key_path(home)
    with _keys_lock:
        if path not in _keys:
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:  # another replica made it meanwhile
                    pass
                else:
                    with os.fdopen(descriptor, "w") as handle:
                        handle.write(secrets.token_hex(32))
            text = path.read_text().strip()
            while not text:  # the replica that made it has not written it yet
                time.sleep(0.01)
                text = path.read_text().strip()
            _keys[path] = bytes.fromhex(text)
        return _keys[path]


def _signature(random_part: str, home: Path | None = None) -> str:
    return hmac.new(signing_key(home), f"kdviz-identity:{random_part}".encode(), hashlib.sha256).hexdigest()[:32]


def new_identity(home: Path | None = None) -> str:
    """A fresh identity the server of KDVIZ_HOME `home` (default: this process's) accepts: 32 random hex digits and
    their signature (64 hex digits)."""
    random_part = secrets.token_hex(16)
    return random_part + _signature(random_part, home)


def is_identity(value) -> bool:
    """Whether value is an identity this server minted (a cookie anyone could make up is not)."""
    if not (isinstance(value, str) and len(value) == IDENTITY_HEX and set(value) <= _HEX):
        return False
    half = IDENTITY_HEX // 2
    return hmac.compare_digest(value[half:], _signature(value[:half]))


def user_identity(issuer: str | None, subject: str | None) -> str | None:
    """The identity of a user an identity provider logged in (st.login: the OIDC claims iss and sub, stable across
    browsers and devices), or None without a subject. It can never equal a cookie's identity (not 64 hex digits)."""
    if not subject:
        return None
    return "user-" + hashlib.sha256(f"kdviz-user:{issuer or ''}\n{subject}".encode()).hexdigest()


# ---- client addresses ------------------------------------------------------------------------------------------

def parse_trusted_proxies(text: str) -> tuple:
    """The trusted_proxies setting ("127.0.0.1, 10.0.0.0/8": addresses or networks, comma or space separated) as
    networks; ValueError naming the bad entry."""
    networks = []
    for entry in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or network (e.g. 127.0.0.1, "
                             "10.0.0.0/8)") from None
    return tuple(networks)


def _address(text: str | None):
    try:
        return ipaddress.ip_address((text or "").strip().strip("[]"))
    except ValueError:
        return None


def _trusted(address, trusted: tuple) -> bool:
    return address is not None and any(address.version == network.version and address in network
                                       for network in trusted)


def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple) -> str | None:
    """The address a request comes from, for the per-address caps; None for this machine (its operator: uncapped).

    peer: the connection's address (Streamlit's st.context.ip_address: None for a loopback connection, which is
    taken as 127.0.0.1). Only when the peer is a trusted proxy is X-Forwarded-For read, from the right (the entry the
    proxy appended; anything left of it the client may have made up), skipping proxies that are trusted too: the
    first address that is not one is the client. A malformed entry stops the walk at the proxy's own address."""
    current = _address(peer) if peer else ipaddress.ip_address("127.0.0.1")
    if current is None:
        return peer
    if _trusted(current, trusted) and forwarded_for:
        for entry in reversed(forwarded_for.split(",")):
            address = _address(entry)
            if address is None:
                break
            current = address
            if not _trusted(address, trusted):
                break
    return None if current.is_loopback else str(current)


# ---- minting, capped per address -------------------------------------------------------------------------------

class IdentityLedger:
    """How many identities each client address was given in the last window_s seconds; at most `limit` (None: no
    limit). Kept in a small sqlite file (path; None: in memory), so that a hall's replicas, which share KDVIZ_HOME,
    share one count: behind a load balancer a fresh private window lands on any replica, and a count per replica would
    let one address mint K times the cap. Bounded: the mints older than the window are dropped, and beyond
    max_addresses addresses the least recently seen are forgotten. Times are wall-clock seconds (processes share them).
    """

    def __init__(self, limit: int | None, window_s: float = MINT_WINDOW_S, max_addresses: int = MAX_ADDRESSES,
                 path: Path | None = None):
        self.limit, self.window_s, self.max_addresses = limit, window_s, max_addresses
        self._lock = threading.Lock()
        self._db = self._open(path)
        if self._db is None:  # KDVIZ_HOME cannot hold it: this process counts alone, in memory
            self._db = self._open(None)

    @staticmethod
    def _open(path: Path | None):
        import sqlite3

        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(":memory:" if path is None else str(path), timeout=10.0, check_same_thread=False,
                                 isolation_level=None)
            db.execute("CREATE TABLE IF NOT EXISTS mints (address TEXT NOT NULL, at REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS mints_by_address ON mints (address, at)")
            return db
        except (OSError, sqlite3.Error):
            return None

    def mint(self, address: str | None, now: float | None = None) -> str | None:
        """A new identity for a browser at address, or None if that address already had `limit` in the window.
        address None (this machine) is never refused."""
        if address is None or self.limit is None:
            return new_identity()
        import sqlite3

        now = time.time() if now is None else now
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")  # one count and one insert at a time across the replicas
                try:
                    db.execute("DELETE FROM mints WHERE at <= ?", (now - self.window_s,))
                    (count,) = db.execute("SELECT COUNT(*) FROM mints WHERE address = ?", (address,)).fetchone()
                    refused = count >= self.limit
                    if not refused:
                        db.execute("INSERT INTO mints VALUES (?, ?)", (address, now))
                        db.execute("DELETE FROM mints WHERE address NOT IN (SELECT address FROM mints GROUP BY "
                                   "address ORDER BY MAX(at) DESC LIMIT ?)", (self.max_addresses,))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error:  # its file went (a full or removed disk): a browser still gets in, uncounted
                refused = False
        return None if refused else new_identity()

    def addresses(self) -> int:
        """How many addresses the ledger remembers now."""
        with self._lock:
            return self._db.execute("SELECT COUNT(DISTINCT address) FROM mints").fetchone()[0]

    def wait_s(self, address: str, now: float | None = None) -> float:
        """Seconds until address may be given an identity again (0: now)."""
        import sqlite3

        now = time.time() if now is None else now
        with self._lock:
            try:
                times = [at for (at,) in self._db.execute(
                    "SELECT at FROM mints WHERE address = ? AND at > ? ORDER BY at", (address, now - self.window_s))]
            except sqlite3.Error:
                return 0.0
        if self.limit is None or len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window_s - now)
