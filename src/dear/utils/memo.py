"""A bounded least-recently-used memo filled a batch at a time."""

from __future__ import annotations

from collections import OrderedDict


class LRUMemo:
    """Up to ``size`` values, LRU first out; trimmed after each call, so a batch larger than ``size`` gets all."""

    def __init__(self, size: int):
        self.size = size
        self._values: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._values)

    def get_many(self, keys, compute) -> list:
        """The values of ``keys``; ``compute(new)`` → values of the keys not held (each once)."""
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
