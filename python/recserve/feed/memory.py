"""Per-user state the feed keeps beside the profiles: onboarding interests and blocked creators
(``UserPrefs``, made durable by the service) and what was served lately (``ServedMemory``, a
cache)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from recserve import _core

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
    bounded in users (least recently served forgotten first). Not durable: it is a cache. It
    lives in the core (``recserve/feed/served_memory.hpp``), where the native feed reads it
    without the GIL."""

    def __init__(self, per_user: int, users: int = 200_000, session_timeout_s: float = 1800.0):
        self.core = _core.feed.ServedMemory(int(per_user), int(users), float(session_timeout_s))

    def recent(self, user: int) -> U64:
        """The user's recently served keys, oldest first."""
        keys: U64 = self.core.recent(int(user))
        return keys

    def forget(self, user: int) -> None:
        self.core.forget(int(user))

    def version(self, user: int) -> int:
        """Pages served to the user so far (within memory): a page computed at an older
        version may hold items served since."""
        return int(self.core.version(int(user)))

    def session_length(self, user: int, now_s: float) -> int:
        return int(self.core.session_length(int(user), float(now_s)))

    def add(self, user: int, keys: Sequence[int], now_s: float) -> None:
        self.core.add(int(user), np.asarray(keys, dtype=np.uint64).reshape(-1), float(now_s))
