"""Opening lake locations: local paths or fsspec URLs (``s3://``, ``gs://``, ``file://``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from zarr.storage import FsspecStore, LocalStore

from .errors import LakeError


def is_url(location: str) -> bool:
    """True for ``scheme://...`` locations other than plain local paths."""
    return "://" in str(location) and not str(location).startswith("file://")


def local_path(location: str | os.PathLike[str]) -> str:
    """The filesystem path of a local lake location (``file://`` stripped)."""
    s = os.fspath(location)
    return s[len("file://") :] if s.startswith("file://") else s


def parse_storage_options(items: list[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` strings (``--storage-option``) into a dict.

    Values ``true``/``false`` become booleans and integers become ints; a key
    ``client_kwargs.endpoint_url=...`` sets a nested mapping.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise LakeError(f"bad --storage-option {item!r}: use key=value")
        key, value = item.split("=", 1)
        v: Any = value
        if value.lower() in ("true", "false"):
            v = value.lower() == "true"
        elif value.lstrip("-").isdigit():
            v = int(value)
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def open_store(
    location: str | os.PathLike[str],
    *,
    read_only: bool = False,
    storage_options: Mapping[str, Any] | None = None,
):
    """Return a Zarr store for a lake location.

    Parameters
    ----------
    location : str or path
        Local path, ``file://`` URL or any fsspec URL.
    read_only : bool
        Open read-only.
    storage_options : mapping, optional
        fsspec storage options (credentials, endpoint, ...).
    """
    loc = os.fspath(location)
    if is_url(loc):
        options = dict(storage_options or {})
        # Object-store listings are cached per filesystem instance by fsspec; a lake
        # is written by other processes, so readers must see fresh listings.
        options.setdefault("use_listings_cache", False)
        try:
            return FsspecStore.from_url(loc, storage_options=options, read_only=read_only)
        except (ImportError, ValueError, TypeError) as e:
            # unknown scheme, backend not installed (s3fs, gcsfs), or a bad storage option
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise LakeError(
                f"cannot open {loc} ({msg}): check the URL scheme, install its fsspec backend "
                "(e.g. pip install s3fs), and the --storage-option values"
            ) from None
    return LocalStore(local_path(loc), read_only=read_only)
