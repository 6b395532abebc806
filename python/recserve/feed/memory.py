"""Per-user state the feed keeps beside the profiles: onboarding interests and blocked creators
(``UserPrefs``, made durable by the service) and what was served lately (``ServedMemory``, a
cache)."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ServedMemory", "UserPrefs"]

U64 = npt.NDArray[np.uint64]


class UserPrefs:
    """Onboarding interests and blocked creators per user (made durable by the service)."""

    def __init__(self) -> None:
        self._interests: dict[int, tuple[str, ...]] = {}
        self._blocked: dict[int, frozenset[str]] = {}
        self.version = 0  # bumped by every change: a page computed before it may be stale

    def set(
        self, user: int, interests: Sequence[str] | None, blocked: Sequence[str] | None
    ) -> None:
        self.version += 1
        if interests is not None:
            self._interests[user] = tuple(interests)
        if blocked is not None:
            self._blocked[user] = frozenset(blocked)

    def interests(self, user: int) -> tuple[str, ...]:
        return self._interests.get(user, ())

    def blocked(self, user: int) -> frozenset[str]:
        return self._blocked.get(user, frozenset())

    def known(self, user: int) -> bool:
        return user in self._interests or user in self._blocked

    def forget(self, user: int) -> None:
        self.version += 1
        self._interests.pop(user, None)
        self._blocked.pop(user, None)

    def state(self) -> dict[str, Any]:
        users = set(self._interests) | set(self._blocked)
        return {str(u): [list(self.interests(u)), sorted(self.blocked(u))] for u in sorted(users)}

    def restore(self, state: dict[str, Any]) -> None:
        for user, (interests, blocked) in state.items():
            self.set(int(user), interests, blocked)


class ServedMemory:
    """Per user, the items served lately (not served again) and impressions this session;
    bounded in users (least recently served forgotten first). Not durable: it is a cache."""

    def __init__(self, per_user: int, users: int = 200_000, session_timeout_s: float = 1800.0):
        self.per_user = per_user
        self.users = users
        self.session_timeout_s = session_timeout_s
        self._lock = threading.Lock()
        # user -> (recent keys, [session impressions, last served at, pages served])
        self._memory: OrderedDict[int, tuple[deque[int], list[float]]] = OrderedDict()

    def recent(self, user: int) -> U64:
        with self._lock:
            entry = self._memory.get(user)
            if entry is None:
                return np.zeros(0, dtype=np.uint64)
            return np.fromiter(entry[0], dtype=np.uint64, count=len(entry[0]))

    def forget(self, user: int) -> None:
        with self._lock:
            self._memory.pop(user, None)

    def version(self, user: int) -> int:
        """Pages served to the user so far (within memory): a page computed at an older
        version may hold items served since."""
        with self._lock:
            entry = self._memory.get(user)
            return 0 if entry is None else int(entry[1][2])

    def session_length(self, user: int, now_s: float) -> int:
        with self._lock:
            entry = self._memory.get(user)
            if entry is None or now_s - entry[1][1] > self.session_timeout_s:
                return 0
            return int(entry[1][0])

    def add(self, user: int, keys: Sequence[int], now_s: float) -> None:
        with self._lock:
            entry = self._memory.get(user)
            if entry is None:
                entry = self._memory[user] = (deque(maxlen=max(self.per_user, 1)), [0.0, now_s, 0])
                while len(self._memory) > self.users:
                    self._memory.popitem(last=False)
            else:
                self._memory.move_to_end(user)
            if self.per_user:
                entry[0].extend(keys)
            session = entry[1]
            if now_s - session[1] > self.session_timeout_s:
                session[0] = 0.0
            session[0] += len(keys)
            session[1] = now_s
            session[2] += 1
