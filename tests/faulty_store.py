"""A Zarr store that fails writes on demand (simulates a full disk or a failing bucket).

``FaultyStore`` wraps any Zarr v3 store (usually a ``LocalStore``) and delegates
everything to it, except that once ``fail_after`` writes whose key matches
``match`` have succeeded, every further matching write raises
``OSError(ENOSPC)`` (or the exception ``error`` builds). Reads are untouched, so
what was written before the fault stays readable.

Used by the tests through :func:`patch_open_store`, which monkeypatches
``sgnlake.schema.store.open_store`` (and the modules that imported it by name)
so that in-process code opening a lake gets a faulty store.
"""

from __future__ import annotations

import errno
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from zarr.core.buffer import Buffer
from zarr.storage import WrapperStore


@dataclass
class FaultState:
    """Shared counters of one injected fault (shared by a store and its read-only/reopened copies).

    Parameters
    ----------
    fail_after : int or None
        Number of matching writes that succeed; the next ones fail. None: never fail.
    match : str
        Regular expression searched in the key; only matching writes count and fail.
    fail_from : str
        Regular expression: the first write of a matching key and every write after it
        fail (whatever ``match`` says), like a disk that fills up at that moment.
    error : callable
        Builds the exception to raise for a key.
    """

    fail_after: int | None = None
    match: str = ""
    fail_from: str = ""
    error: Callable[[str], BaseException] = field(
        default=lambda key: OSError(errno.ENOSPC, "No space left on device", key)
    )
    writes: int = 0
    failures: int = 0
    written: list[str] = field(default_factory=list)

    def check(self, key: str) -> None:
        """Count a write of ``key``; raise if it must fail."""
        if self.fail_from and re.search(self.fail_from, key):
            self.fail_after, self.match, self.fail_from = self.writes, "", ""
        if self.match and not re.search(self.match, key):
            return
        if self.fail_after is not None and self.writes >= self.fail_after:
            self.failures += 1
            raise self.error(key)
        self.writes += 1
        self.written.append(key)


class FaultyStore(WrapperStore[Any]):
    """Delegate to ``store``; raise on writes (``set``, ``set_if_not_exists``, ``delete``,
    ``delete_dir``) per ``state``."""

    def __init__(self, store: Any, state: FaultState | None = None) -> None:
        super().__init__(store)
        self.state = state if state is not None else FaultState()

    def _with_store(self, store: Any) -> FaultyStore:
        return type(self)(store, self.state)

    async def set(self, key: str, value: Buffer) -> None:
        self.state.check(key)
        return await self._store.set(key, value)

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        for key, value in values:  # WrapperStore hands these to the inner store directly
            await self.set(key, value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        self.state.check(key)
        return await self._store.set_if_not_exists(key, value)

    async def delete(self, key: str) -> None:
        self.state.check(key)
        return await self._store.delete(key)

    async def delete_dir(self, prefix: str) -> None:
        self.state.check(prefix)
        return await self._store.delete_dir(prefix)

    def __repr__(self) -> str:
        return f"FaultyStore({self._store!r}, fail_after={self.state.fail_after}, match={self.state.match!r})"


def patch_open_store(monkeypatch: Any, state: FaultState) -> list[FaultyStore]:
    """Make every ``open_store`` call in sgnlake return a :class:`FaultyStore` sharing ``state``.

    Patches ``sgnlake.schema.store.open_store`` and every already-imported
    ``sgnlake.*`` module that bound the name ``open_store`` (``from .store import
    open_store``). Returns the list of stores handed out.
    """
    import sgnlake.schema.store as store_mod

    real = store_mod.open_store
    handed: list[FaultyStore] = []

    def faulty_open_store(location: Any, *, read_only: bool = False, storage_options: Any = None) -> Any:
        inner = real(location, read_only=read_only, storage_options=storage_options)
        if read_only:
            return inner
        s = FaultyStore(inner, state)
        handed.append(s)
        return s

    monkeypatch.setattr(store_mod, "open_store", faulty_open_store)
    for name, mod in list(sys.modules.items()):
        if name.startswith("sgnlake.") and getattr(mod, "open_store", None) is real:
            monkeypatch.setattr(mod, "open_store", faulty_open_store)
    return handed
