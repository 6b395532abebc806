"""The feed: one page of items for one user, now.

    builder = FeedBuilder(config, catalog, profiles, amplifier, trending, users, served)
    result = builder.build(user_key, n=10, ranker=ranker, now_ms=now)   # FeedResult

``builder.py`` is the front door (one native call per page), ``reference.py`` the pipeline in
Python that the native one agrees with, ``config.py`` its settings, ``memory.py`` the per-user
state beside the profiles.
"""

from recserve.feed.builder import FeedBuilder
from recserve.feed.config import FeedConfig
from recserve.feed.memory import ServedMemory, UserPrefs
from recserve.feed.reference import FeedResult, ReferenceFeed, Served

__all__ = [
    "FeedBuilder",
    "FeedConfig",
    "FeedResult",
    "ReferenceFeed",
    "Served",
    "ServedMemory",
    "UserPrefs",
]
