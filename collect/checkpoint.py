"""Resume state of a run: model, optimizer, every RNG, training step.

The state is serialised with :func:`torch.save` into bytes, which the writer
stores as a ``uint8`` Zarr array under ``checkpoints/<run_id>/`` before the
snapshot it belongs to is committed.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import torch
from torch import nn

from sgnlake.schema.errors import LakeError

from .rng import get_rng_state, set_rng_state

#: Version of the checkpoint dict layout.
FORMAT = 1


def capture(model: nn.Module, optimizer: torch.optim.Optimizer, *, step: int, snapshot: int) -> bytes:
    """Serialise the training state at training step ``step`` (snapshot ``snapshot`` taken there).

    Returns
    -------
    bytes
        ``torch.save`` of a dict with ``model``, ``optimizer``, ``rng``, ``step``,
        ``snapshot`` (tensors moved to the CPU).
    """
    state = {
        "format": FORMAT,
        "model": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": get_rng_state(),
        "step": int(step),
        "snapshot": int(snapshot),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def load(data: bytes) -> dict[str, Any]:
    """Deserialise :func:`capture` bytes (``weights_only``: no code is run)."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any undecodable checkpoint is a lake problem
        raise LakeError(
            f"resume checkpoint cannot be read ({type(e).__name__}): start a new run id"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise LakeError("resume checkpoint has an unknown format: start a new run id")
    return state


def restore(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Load a :func:`load`-ed state into ``model`` and ``optimizer``, restore every RNG.

    Returns
    -------
    int
        The training step the state belongs to.
    """
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return int(state["step"])


def digest(data: bytes) -> str:
    """``sha256:<hex>`` of checkpoint bytes (stored next to them, checked on resume)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
