"""A bounded least-recently-used memo filled a batch at a time."""

from __future__ import annotations

from collections import OrderedDict


class LRUMemo:
    """Up to ``size`` values by key; the least recently used go first. ``get_many`` computes the
    missing keys in one call and trims only after every value of the call is gathered, so a batch
    larger than ``size`` still gets all of its values."""

    def __init__(self, size: int):
        self.size = size
        self._values: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._values)

    def get_many(self, keys, compute) -> list:
        """The values of ``keys`` (in order); ``compute(new)`` → the values of the keys not held
        (each once, in first-seen order)."""
        keys = list(keys)
        new = [k for k in dict.fromkeys(keys) if k not in self._values]
        for k in keys:
            if k in self._values:
                self._values.move_to_end(k)
        computed = dict(zip(new, compute(new))) if new else {}
        self._values.update(computed)
        out = [computed[k] if k in computed else self._values[k] for k in keys]
        while len(self._values) > self.size:
            self._values.popitem(last=False)
        return out
