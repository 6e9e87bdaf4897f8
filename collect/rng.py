"""Random-number state: seeds derived from the run seed, and saving/restoring every RNG.

A snapshot must not change the training trajectory, so it draws its partition
from its own :class:`torch.Generator` and restores every global RNG it might
touch (torch CPU and CUDA, numpy, python ``random``).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

#: Stream tags mixed into derived seeds so streams never coincide.
TRAIN_ORDER = 1
PARTITION = 2


def derived_seed(seed: int, stream: int, index: int) -> int:
    """A 63-bit seed for ``(seed, stream, index)``, via numpy's SeedSequence."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, stream, int(index)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def generator(seed: int, stream: int, index: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, stream, index)`` (same numbers on every device)."""
    return torch.Generator(device="cpu").manual_seed(derived_seed(seed, stream, index))


def get_rng_state() -> dict[str, Any]:
    """Every global RNG state: torch CPU, torch CUDA (all devices), numpy, python ``random``.

    The numpy state is converted to plain Python values so that the dict loads
    with ``torch.load(weights_only=True)``.
    """
    np_state = np.random.get_state()  # noqa: NPY002 - the global legacy RNG is what we preserve
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states returned by :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Context manager restoring every global RNG state on exit."""
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)
