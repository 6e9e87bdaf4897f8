"""The lease rule (schema/lease.py) on a local lake and on moto S3: one live holder, stale takeover."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from sgnlake.schema.lease import Lease, LeaseHeldError, LeaseLostError, _create_exclusive, current_owner
from sgnlake.schema.store import list_keys, open_store, read_bytes, write_bytes

try:
    from .s3_fixtures import bucket, s3  # noqa: F401  (fixtures)
except ImportError:
    from s3_fixtures import bucket, s3  # noqa: F401  (fixtures)


def _exercise(store) -> None:
    assert _create_exclusive(store, ".leases/x/probe", b"1")  # the race primitive: one creator wins
    assert not _create_exclusive(store, ".leases/x/probe", b"2")
    assert read_bytes(store, ".leases/x/probe") == b"1"
    a = Lease.acquire(store, "runs/r", {"cmd": "test"}, ttl=30, heartbeat=False)
    assert a.owner["cmd"] == "test"
    with pytest.raises(LeaseHeldError, match=f"pid {a.owner['pid']}") as e:
        Lease.acquire(store, "runs/r", ttl=30, heartbeat=False)
    assert e.value.owner["token"] == a.owner["token"]
    assert current_owner(store, "runs/r")["token"] == a.owner["token"]
    other = Lease.acquire(store, "runs/other", ttl=30, heartbeat=False)  # keys are independent
    other.release()
    a.release()
    assert current_owner(store, "runs/r") is None
    b = Lease.acquire(store, "runs/r", ttl=30, heartbeat=False)
    assert b.generation == a.generation + 1
    b.release()


def test_lease_local(tmp_path) -> None:
    _exercise(open_store(tmp_path / "lake"))


def test_lease_s3(s3, bucket) -> None:
    _exercise(open_store(f"s3://{bucket}/lake", storage_options=s3.storage_options))


def test_stale_heartbeat_is_taken_over_and_old_holder_learns_it(tmp_path) -> None:
    store = open_store(tmp_path / "lake")
    a = Lease.acquire(store, "k", {"host_hint": 1}, ttl=30, heartbeat=False)
    key = [k for k in list_keys(store, ".leases/k")][0]
    rec = json.loads(read_bytes(store, key))
    rec["owner"]["host"] = "elsewhere"  # another host: only the heartbeat can tell
    with pytest.raises(LeaseHeldError, match="elsewhere"):
        write_bytes(store, key, json.dumps(rec).encode())
        Lease.acquire(store, "k", ttl=30, heartbeat=False)
    rec["heartbeat"] = time.time() - 31
    write_bytes(store, key, json.dumps(rec).encode())
    b = Lease.acquire(store, "k", ttl=30, heartbeat=False)
    with pytest.raises(LeaseLostError):
        a.heartbeat()
    b.release()


def test_dead_process_on_this_host_is_taken_over_at_once(tmp_path) -> None:
    lake = tmp_path / "lake"
    code = (
        "import sys; from sgnlake.schema.lease import Lease; "
        f"Lease.acquire({str(lake)!r}, 'k', ttl=3600, heartbeat=False); print('held')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "held", out.stderr
    lease = Lease.acquire(lake, "k", ttl=3600, heartbeat=False)  # the holder exited without release
    assert lease.generation == 2
    lease.release()


def test_heartbeat_thread_refreshes(tmp_path) -> None:
    store = open_store(tmp_path / "lake")
    a = Lease.acquire(store, "k", ttl=0.4)
    t0 = a.record["heartbeat"]
    time.sleep(0.5)
    assert a.record["heartbeat"] > t0
    with pytest.raises(LeaseHeldError):
        Lease.acquire(store, "k", ttl=0.4, heartbeat=False)
    a.release()
    assert json.loads(read_bytes(store, f".leases/k/g{a.generation:09d}.json"))["released"]


def test_stalled_newcomer_withdraws_a_recreated_dropped_generation(tmp_path, monkeypatch) -> None:
    """A newcomer read g1 as stale, then stalled while others took g2 and g3 (deleting g1, g2).

    Its exclusive create of g2 then succeeds (g2 was dropped as history); it must see g3 when it
    lists again, withdraw its g2 and name g3's owner, not hold the lease beside g3's holder.
    """
    import sgnlake.schema.lease as lease_mod

    store = open_store(tmp_path / "lake")
    first = Lease.acquire(store, "k", ttl=30, heartbeat=False)  # g1
    first.release()
    released_g1 = json.loads(read_bytes(store, ".leases/k/g000000001.json"))
    second = Lease.acquire(store, "k", ttl=30, heartbeat=False)  # g2, deletes g1
    third_holder = second.owner
    second.release()
    live = Lease.acquire(store, "k", ttl=30, heartbeat=False)  # g3, deletes g2: live
    assert live.generation == 3 and live.owner["token"] != third_holder["token"]
    calls = {"gens": 0}
    real_generations, real_read = lease_mod._generations, lease_mod._read

    def stale_view(st, prefix):  # the newcomer's first listing was taken before g2 and g3 existed
        calls["gens"] += 1
        return [1] if calls["gens"] == 1 else real_generations(st, prefix)

    def read(st, key):
        return released_g1 if key.endswith("g000000001.json") else real_read(st, key)

    monkeypatch.setattr(lease_mod, "_generations", stale_view)
    monkeypatch.setattr(lease_mod, "_read", read)
    with pytest.raises(LeaseHeldError) as e:
        Lease.acquire(store, "k", ttl=30, heartbeat=False)
    assert e.value.owner["token"] == live.owner["token"]
    keys = sorted(k.rsplit("/", 1)[-1] for k in list_keys(store, ".leases/k") if k.endswith(".json"))
    assert keys == ["g000000003.json"]  # the re-created g2 was withdrawn
    live.release()


def test_check_after_a_stall_finds_the_takeover(tmp_path) -> None:
    """A holder whose heartbeat is late checks the store before its next commit, not a beat later."""
    store = open_store(tmp_path / "lake")
    a = Lease.acquire(store, "k", ttl=0.5, heartbeat=False)
    a.check()  # fresh: nothing to learn
    time.sleep(0.7)  # a stall longer than the timeout (no heartbeat meanwhile)
    b = Lease.acquire(store, "k", ttl=0.5, heartbeat=False)  # stale: taken over
    with pytest.raises(LeaseLostError, match="taken over"):
        a.check()
    a.release()  # a lost lease is not written back
    keys = [k.rsplit("/", 1)[-1] for k in list_keys(store, ".leases/k") if k.endswith(".json")]
    assert keys == [f"g{b.generation:09d}.json"] and b.generation == a.generation + 1
    assert json.loads(read_bytes(store, f".leases/k/{keys[0]}"))["owner"]["token"] == b.owner["token"]
    b.release()


def test_holder_dropped_as_history_learns_it_lost(tmp_path) -> None:
    """A holder stalled while two others took the lease in turn (its record and the next one deleted).

    Its next heartbeat must not find "no generation after mine" and write its record back.
    """
    store = open_store(tmp_path / "lake")
    a = Lease.acquire(store, "k", ttl=0.5, heartbeat=False)
    time.sleep(0.7)  # stalled beyond the timeout
    b = Lease.acquire(store, "k", ttl=0.5, heartbeat=False)  # g2, deletes g1
    b.release()
    c = Lease.acquire(store, "k", ttl=0.5, heartbeat=False)  # g3, deletes g2
    with pytest.raises(LeaseLostError):
        a.heartbeat()
    keys = [k.rsplit("/", 1)[-1] for k in list_keys(store, ".leases/k") if k.endswith(".json")]
    assert keys == [f"g{c.generation:09d}.json"]  # a's record was not written back
    c.release()


def test_takeover_between_heartbeat_look_and_write_is_withdrawn(tmp_path, monkeypatch) -> None:
    """The holder stalls after looking for newer generations and before writing its heartbeat.

    Meanwhile a newcomer takes over and drops the holder's record; the late write re-creates it.
    The holder must find the newer generation after writing, withdraw its record and stop.
    """
    import sgnlake.schema.lease as lease_mod

    store = open_store(tmp_path / "lake")
    a = Lease.acquire(store, "k", ttl=0.5, heartbeat=False)
    time.sleep(0.7)  # stale by its heartbeat
    took: list[Lease] = []
    real_write = lease_mod.write_bytes

    def write(st, key, data):
        if key.endswith(f"g{a.generation:09d}.json") and not took:  # the takeover lands right here
            took.append(Lease.acquire(store, "k", ttl=0.5, heartbeat=False))
        return real_write(st, key, data)

    monkeypatch.setattr(lease_mod, "write_bytes", write)
    with pytest.raises(LeaseLostError):
        a.heartbeat()
    (b,) = took
    keys = [k.rsplit("/", 1)[-1] for k in list_keys(store, ".leases/k") if k.endswith(".json")]
    assert keys == [f"g{b.generation:09d}.json"]
    b.release()
