"""The iteration order of a ``std::unordered_map<std::string, T>`` as built by libstdc++.

Triton core keeps request inputs (and ensemble outputs) in such maps, so the order a model sees in
``request.inputs()``, the input a validation error names first, and the order of ensemble outputs
all follow it. This module reproduces it: libstdc++'s ``std::hash<std::string>`` (``_Hash_bytes``,
a 64-bit Murmur variant with seed ``0xc70f6907``), its prime bucket policy (13 buckets for up to 13
keys), and insertion at the front of a bucket (or of the whole list when the bucket was empty).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

_MUL = 0xC6A4A7935BD1E995
_MASK = (1 << 64) - 1
_SEED = 0xC70F6907
_FAST_BUCKETS = (2, 2, 2, 3, 5, 5, 7, 7, 11, 11, 11, 11, 13, 13)


def _shift_mix(value: int) -> int:
    return value ^ (value >> 47)


def string_hash(text: str) -> int:
    """``std::hash<std::string>`` of the UTF-8 bytes of ``text`` on 64-bit libstdc++."""
    data = text.encode("utf-8")
    length = len(data)
    digest = _SEED ^ ((length * _MUL) & _MASK)
    aligned = length & ~7
    for start in range(0, aligned, 8):
        word = int.from_bytes(data[start : start + 8], "little")
        digest ^= (_shift_mix((word * _MUL) & _MASK) * _MUL) & _MASK
        digest = (digest * _MUL) & _MASK
    if length & 7:
        digest ^= int.from_bytes(data[aligned:], "little")
        digest = (digest * _MUL) & _MASK
    digest = (_shift_mix(digest) * _MUL) & _MASK
    return _shift_mix(digest)


def _next_prime(n: int) -> int:
    if n < len(_FAST_BUCKETS):
        return _FAST_BUCKETS[n]
    candidate = n
    while any(candidate % d == 0 for d in range(2, int(candidate**0.5) + 1)):
        candidate += 1
    return candidate


class _Table:
    """Just enough of ``_Hashtable`` to know its node order."""

    def __init__(self) -> None:
        self.buckets = 1
        self.next_resize = 0
        self.order: list[str] = []  # the singly linked node list, front first

    def _bucket(self, key: str) -> int:
        return string_hash(key) % self.buckets

    def _insert_node(self, key: str, order: list[str], heads: dict[int, int]) -> None:
        # ``heads`` maps a bucket to the index, in ``order``, of its first node.
        bucket = self._bucket(key)
        if bucket in heads:
            order.insert(heads[bucket], key)
            for other, index in heads.items():
                if index > heads[bucket] or (other != bucket and index == heads[bucket]):
                    heads[other] = index + 1
        else:
            order.insert(0, key)
            for other in heads:
                heads[other] += 1
            heads[bucket] = 0

    def _rebuild(self, keys: list[str]) -> None:
        order: list[str] = []
        heads: dict[int, int] = {}
        for key in keys:
            self._insert_node(key, order, heads)
        self.order = order

    def insert(self, key: str) -> None:
        if key in self.order:
            return
        count = len(self.order)
        if count + 1 > self.next_resize:
            minimum = max(count + 1, 0 if self.next_resize else 11)
            if minimum >= self.buckets:
                self.buckets = _next_prime(max(minimum + 1, self.buckets * 2))
                self.next_resize = self.buckets
                self._rebuild(list(self.order))
            else:
                self.next_resize = self.buckets
        heads: dict[int, int] = {}
        for index, existing in enumerate(self.order):
            heads.setdefault(self._bucket(existing), index)
        self._insert_node(key, self.order, heads)


def unordered_order(keys: Iterable[str]) -> list[str]:
    """The iteration order of an ``unordered_map`` after inserting ``keys`` in order (duplicates ignored)."""
    return list(_order(tuple(keys)))


@functools.lru_cache(maxsize=4096)
def _order(keys: tuple[str, ...]) -> tuple[str, ...]:
    table = _Table()
    for key in keys:
        table.insert(key)
    return tuple(table.order)
