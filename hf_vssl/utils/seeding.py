"""Seeds derived from integer coordinates (seed, epoch, batch, process, ...), stable across runs and machines."""

from __future__ import annotations

import hashlib
import struct

__all__ = ["derive_seed"]


def derive_seed(*ints: int) -> int:
    """A seed in ``[0, 2**63)`` from a stable hash (BLAKE2b) of the integers ``ints``, in order.

    The same integers give the same seed in every process, run and Python version (unlike
    ``hash()``); any change to one of them gives an unrelated seed. Integers must fit in 64 bits
    (signed or unsigned).
    """
    digest = hashlib.blake2b(digest_size=8, person=b"hf_vssl-seed")
    for value in ints:
        value = int(value)
        if not -(2**63) <= value < 2**64:
            raise ValueError(f"derive_seed takes integers that fit in 64 bits, got {value}")
        digest.update(struct.pack("<Q", value % 2**64))
    return int.from_bytes(digest.digest(), "little") >> 1
