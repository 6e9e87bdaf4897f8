"""Leases: at most one live holder of a named key of a lake (a run's writer, a result's computation).

The rule, the same on local disks and object stores
---------------------------------------------------
A lease on ``key`` is a series of generation records ``.leases/<key>/g<N>.json``
(N = 1, 2, ...), each created with an exclusive create (``O_EXCL`` on local
disks, ``If-None-Match: *`` on S3) so that of two processes creating the same
generation exactly one succeeds. The holder is the owner of the highest
generation. A record holds the owner (host, pid, token, start time) and a
heartbeat time, refreshed every ``ttl / 4`` seconds by a background thread.

A newcomer takes the lease over (creates generation N + 1) only when
generation N is provably not live:

* it was released (its owner finished, on any exit path), or
* its owner ran on this host and its process is gone (or it is this process
  and no :class:`Lease` object of it holds that record any more), or
* its heartbeat is older than ``ttl`` (default :data:`DEFAULT_TTL` seconds;
  this assumes clocks of the hosts agree to well within ``ttl``).

Otherwise :class:`LeaseHeldError` names the live owner. Two newcomers racing
for a stale generation both try to create N + 1; one wins, and the others,
looking again, find N + 1 live and name its owner. Older generations are
deleted by the winner; a newcomer that stalled so long that the number it
creates was already taken and deleted finds a higher generation when it lists
again after creating, and withdraws. A holder whose
generation was superseded (it stalled for longer than ``ttl``) learns it at its
next heartbeat or :meth:`Lease.check` (called before each commit; it beats
synchronously when the heartbeat is late) and must stop writing
(:class:`LeaseLostError`); a heartbeat looks for newer generations before and
after writing, and withdraws its record when a takeover landed in between. Object stores offer no fencing: a stall between that
check and the commit's writes is not detectable.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from zarr.abc.store import Store
from zarr.storage import FsspecStore

from .errors import LakeError, LakeReadOnlyError, SgnlakeError
from .store import list_keys, read_bytes, run_sync, storage, write_bytes

#: Top-level prefix of lease records (a name no run, result or checkpoint can take).
LEASES_PREFIX = ".leases"
#: Seconds without a heartbeat after which a lease held on another host (or by an unknown pid) is stale.
DEFAULT_TTL = 60.0
#: Environment variable overriding :data:`DEFAULT_TTL` (seconds) for the leases sgnlake takes.
TTL_ENV = "SGNLAKE_LEASE_TTL"
_GEN = re.compile(r"^g(\d{9})\.json$")


def lease_ttl() -> float:
    """The lease timeout in seconds: ``$SGNLAKE_LEASE_TTL`` if set (> 0), else :data:`DEFAULT_TTL`."""
    raw = os.environ.get(TTL_ENV, "")
    try:
        ttl = float(raw) if raw else DEFAULT_TTL
    except ValueError:
        raise LakeError(f"{TTL_ENV}={raw!r} is not a number of seconds: unset it or give e.g. 60") from None
    if not ttl > 0 or ttl == float("inf"):
        raise LakeError(f"{TTL_ENV}={raw!r} must be a positive number of seconds")
    return ttl


class LeaseHeldError(LakeError):
    """Another live process holds the lease (its owner is :attr:`owner`)."""

    def __init__(self, message: str, owner: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.owner = dict(owner or {})


class LeaseLostError(LakeError):
    """The lease was taken over by another process (this holder stalled beyond the timeout)."""


def describe_owner(owner: Mapping[str, Any]) -> str:
    """One-line description of a lease owner: ``pid 123 on host since <time>``."""
    started = owner.get("start")
    when = (
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)) if isinstance(started, int | float) else "?"
    )
    return f"pid {owner.get('pid')} on {owner.get('host')} since {when}"


def _store(where: Any, storage_options: Mapping[str, Any] | None) -> Store:
    if hasattr(where, "store") and not isinstance(where, Store):  # a zarr Group or Array
        where = where.store
    return storage(where, read_only=False, storage_options=storage_options)


def _prefix(key: str) -> str:
    key = key.strip("/")
    if not key:
        raise ValueError("a lease key must not be empty")
    return f"{LEASES_PREFIX}/{key}"


#: ``.leases`` is stored as an empty Zarr array so that Zarr's listings of the root see a node, never
#: stray objects; the records live under it, where Zarr never looks.
_NODE_DOC = {
    "zarr_format": 3,
    "node_type": "array",
    "shape": [0],
    "data_type": "uint8",
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1]}},
    "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
    "fill_value": 0,
    "codecs": [{"name": "bytes"}],
    # a named dimension keeps plain xarray.open_datatree(lake) working (it needs dimension_names)
    "dimension_names": ["lease"],
    "attributes": {"_sgnlake_leases": "lease records of sgnlake writers (see sgnlake.schema.lease)"},
}


def _ensure_node(store: Store) -> None:
    key = f"{LEASES_PREFIX}/zarr.json"
    if read_bytes(store, key) is None:
        _create_exclusive(store, key, json.dumps(_NODE_DOC).encode())


def _gen_key(prefix: str, n: int) -> str:
    return f"{prefix}/g{n:09d}.json"


def _create_exclusive(store: Store, key: str, data: bytes) -> bool:
    """Create object ``key`` only if it does not exist; True when this call created it."""
    if isinstance(store, FsspecStore):
        fs = store.fs
        path = f"{store.path.rstrip('/')}/{key}" if store.path else key
        try:
            run_sync(fs._pipe_file(path, data, mode="create"))
        except FileExistsError:
            return False
        except OSError as e:  # s3fs maps HTTP 412 (precondition failed) to an OSError subclass
            if "412" in str(e) or "PreconditionFailed" in str(e):
                return False
            raise
        return True
    from zarr.buffer import cpu

    before = read_bytes(store, key)
    if before is not None:
        return False
    run_sync(store.set_if_not_exists(key, cpu.Buffer.from_bytes(data)))
    return read_bytes(store, key) == data


#: Tokens of the leases this process holds now (a record of this pid with another token was left
#: by an earlier attempt whose release could not be written, e.g. on a full disk).
_HELD: set[str] = set()
_HELD_LOCK = threading.Lock()


def _process_gone(owner: Mapping[str, Any]) -> bool:
    """True when ``owner`` ran on this host and its process no longer exists."""
    if owner.get("host") != socket.gethostname():
        return False
    if owner.get("pid") == os.getpid():  # this process: live only while a Lease object holds it
        with _HELD_LOCK:
            return owner.get("token") not in _HELD
    try:
        pid = int(owner.get("pid", -1))
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return _is_zombie(pid)  # killed but not yet reaped by its parent: it holds nothing any more


def _is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits only to be reaped (Linux ``/proc``; False elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def _generations(store: Store, prefix: str) -> list[int]:
    out = []
    for k in list_keys(store, prefix):
        m = _GEN.match(k.rsplit("/", 1)[-1])
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


def _read(store: Store, key: str) -> dict[str, Any] | None:
    raw = read_bytes(store, key)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def stale_reason(record: Mapping[str, Any], ttl: float, now: float | None = None) -> str | None:
    """Why a lease record is not live (released, process gone, heartbeat too old), or None if live."""
    if record.get("released"):
        return "released"
    if not record.get("owner"):
        return "unreadable record"
    if _process_gone(record["owner"]):
        return "its process is gone"
    now = time.time() if now is None else now
    beat = record.get("heartbeat")
    if not isinstance(beat, int | float):
        return "no heartbeat"
    rec_ttl = record.get("ttl", ttl)
    limit = max(ttl, rec_ttl) if isinstance(rec_ttl, int | float) else ttl
    if now - beat > limit:
        return f"no heartbeat for {now - beat:.0f} s (timeout {limit:.0f} s)"
    return None


def current_owner(
    where: Any, key: str, *, ttl: float | None = None, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The owner of the live lease on ``key`` (None when there is no live holder; ``ttl``: :func:`lease_ttl`)."""
    ttl = lease_ttl() if ttl is None else ttl
    store = _store(where, storage_options)
    prefix = _prefix(key)
    gens = _generations(store, prefix)
    if not gens:
        return None
    rec = _read(store, _gen_key(prefix, gens[-1])) or {}
    return None if stale_reason(rec, ttl) else dict(rec.get("owner", {}))


class Lease:
    """A held lease on one key of a lake; see the module docstring for the rule.

    Use :meth:`acquire`; release with :meth:`release` (or as a context manager).
    """

    def __init__(self, store: Store, key: str, generation: int, record: dict[str, Any], ttl: float) -> None:
        self.store = store
        self.key = key
        self.generation = generation
        self.record = record
        self.ttl = float(ttl)
        self.lost: LeaseLostError | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.released = False

    @property
    def owner(self) -> dict[str, Any]:
        """This holder's owner record: host, pid, token, start (plus the caller's ``owner_info``)."""
        return dict(self.record["owner"])

    @property
    def _key(self) -> str:
        return _gen_key(_prefix(self.key), self.generation)

    @classmethod
    def acquire(
        cls,
        where: Any,
        key: str,
        owner_info: Mapping[str, Any] | None = None,
        ttl: float | None = None,
        *,
        heartbeat: bool = True,
        storage_options: Mapping[str, Any] | None = None,
        what: str | None = None,
    ) -> Lease:
        """Take the lease on ``key`` of a lake, or raise :class:`LeaseHeldError` naming its live owner.

        Parameters
        ----------
        where : str, path, zarr Store or Group
            The lake (its location, store, or a group of it).
        key : str
            What is leased, e.g. ``runs/<run_id>`` or ``results/<run_id>/<key>``.
        owner_info : mapping, optional
            Extra JSON-able entries recorded with the owner (e.g. the command).
        ttl : float, optional
            Seconds without a heartbeat after which the lease counts as stale (default
            :func:`lease_ttl`: ``$SGNLAKE_LEASE_TTL`` or :data:`DEFAULT_TTL`). A record
            stays live for the larger of its own and the newcomer's timeout.
        heartbeat : bool
            Start the background thread refreshing the heartbeat every ``ttl / 4`` s.
        storage_options : mapping, optional
            fsspec options when ``where`` is a location.
        what : str, optional
            How the error names the key (default ``key``).

        Raises
        ------
        LeaseHeldError
            A live process holds the lease.
        """
        ttl = lease_ttl() if ttl is None else ttl
        store = _store(where, storage_options)
        try:
            return cls._acquire(store, key, owner_info, ttl, heartbeat, what)
        except SgnlakeError:
            raise
        except Exception as e:  # the storage failed (read-only, unreachable, ...): one line
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            label = what or key
            if isinstance(e, PermissionError) or getattr(e, "errno", None) in (errno.EROFS, errno.EACCES):
                raise LakeReadOnlyError(
                    f"cannot write the lease of {label} ({type(e).__name__}: {first}): the lake is "
                    "read-only here; collect into a writable location"
                ) from None
            raise LakeError(
                f"cannot take the lease of {label} ({type(e).__name__}: {first}): check the storage "
                "and try again"
            ) from None

    @classmethod
    def _acquire(
        cls,
        store: Store,
        key: str,
        owner_info: Mapping[str, Any] | None,
        ttl: float,
        heartbeat: bool,
        what: str | None,
    ) -> Lease:
        prefix = _prefix(key)
        t = time.time()
        owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": uuid.uuid4().hex,
            "start": t,
            **dict(owner_info or {}),
        }
        label = what or key
        _ensure_node(store)
        for _ in range(5):
            gens = _generations(store, prefix)
            n = gens[-1] if gens else 0
            if n:
                rec = _read(store, _gen_key(prefix, n))
                if rec is None:  # deleted meanwhile: look again
                    continue
                if stale_reason(rec, ttl) is None:
                    held = rec.get("owner", {})
                    raise LeaseHeldError(
                        f"{label} is in use by another process ({describe_owner(held)}): wait for it to "
                        f"finish (a lease is stale {ttl:.0f} s after its last heartbeat, or at once when "
                        "its process on this host is gone)",
                        held,
                    )
            record = {"owner": owner, "heartbeat": time.time(), "ttl": float(ttl), "generation": n + 1}
            if _create_exclusive(store, _gen_key(prefix, n + 1), json.dumps(record).encode()):
                if max(_generations(store, prefix), default=n + 1) != n + 1:
                    # Created a number that was taken and already dropped as history (this process
                    # stalled between listing and creating while others took n + 1 and n + 2):
                    # the higher generation rules; withdraw this record and look again.
                    with contextlib.suppress(Exception):
                        run_sync(store.delete(_gen_key(prefix, n + 1)))
                    continue
                with _HELD_LOCK:
                    _HELD.add(owner["token"])
                lease = cls(store, key, n + 1, record, ttl)
                for old in gens:  # older generations are history: drop them (best effort)
                    with contextlib.suppress(Exception):
                        run_sync(store.delete(_gen_key(prefix, old)))
                if heartbeat:
                    lease.start_heartbeat()
                return lease
        raise LeaseHeldError(f"{label} is being taken by another process: try again")

    # ------------------------------------------------------------------ holding

    def start_heartbeat(self) -> None:
        """Refresh the heartbeat every ``ttl / 4`` seconds in a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._beat_loop, name=f"sgnlake-lease-{self.key}", daemon=True)
        self._thread.start()

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.heartbeat()
            except LeaseLostError:
                return
            except Exception:  # noqa: BLE001, S112 - a transient storage error: try at the next beat
                continue

    def heartbeat(self) -> None:
        """Refresh the heartbeat now.

        Raises
        ------
        LeaseLostError
            Another process took the lease over (a newer generation exists).
        """
        with self._lock:
            if self.lost is not None:
                raise self.lost
            if self.released:
                return
            # superseded when a later generation exists, or when this record was dropped as history
            # (a later one was created and, after being released in turn, dropped by the next)
            gens = _generations(self.store, _prefix(self.key))
            if not gens or gens[-1] != self.generation:
                raise self._lose()
            self.record = {**self.record, "heartbeat": time.time()}
            write_bytes(self.store, self._key, json.dumps(self.record).encode())
            # taken over between the look and the write (this process stalled in between): the
            # write may have re-created a record the newcomer dropped; withdraw it
            if max(_generations(self.store, _prefix(self.key)), default=self.generation) != self.generation:
                with contextlib.suppress(Exception):
                    run_sync(self.store.delete(self._key))
                raise self._lose()

    def _lose(self) -> LeaseLostError:
        self.lost = LeaseLostError(
            f"the lease on {self.key} was taken over by another process (this one stalled for "
            f"more than {self.ttl:.0f} s): stop writing"
        )
        return self.lost

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if the lease was taken over; call it before each commit.

        When the last heartbeat is older than ``ttl / 2`` (the heartbeat thread is late: this
        process stalled, or was stopped), it first beats synchronously, which looks for a
        newer generation: a holder taken over during a stall learns it here, not a beat later.
        Other storage errors of that beat are left to the commit's own writes.
        """
        if self.lost is not None:
            raise self.lost
        if not self.released and time.time() - self.record["heartbeat"] > self.ttl / 2:
            try:
                self.heartbeat()
            except LeaseLostError:
                raise
            except Exception:  # noqa: BLE001, S110 - transient: the commit's writes will tell
                pass

    def release(self) -> None:
        """Stop the heartbeat and mark the lease released (idempotent; never raises on storage errors)."""
        self._stop.set()
        with _HELD_LOCK:
            _HELD.discard(self.record["owner"]["token"])
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            if self.released or self.lost is not None:
                self.released = True
                return
            self.released = True
            self.record = {**self.record, "released": True, "heartbeat": time.time()}
            with contextlib.suppress(Exception):
                write_bytes(self.store, self._key, json.dumps(self.record).encode())

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
