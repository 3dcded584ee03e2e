"""A small bounded cache shared by the agents (model answers, normalised customers)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class LRUCache:
    """A bounded, thread-safe LRU; a value is stored only when computing it succeeded."""

    def __init__(self, size: int):
        self._size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def clear(self) -> int:
        """Drop everything; returns how many entries there were."""
        with self._lock:
            count = len(self._items)
            self._items.clear()
        return count

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        value = compute()
        if self._size:
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        return value
