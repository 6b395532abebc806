"""The feed: one page of items for one user, now (see ``reference.py`` for the pipeline).

    builder = FeedBuilder(config, catalog, profiles, amplifier, trending, users, served)
    result = builder.build(user_key, n=10, ranker=ranker, now_ms=now)   # FeedResult
"""

from recserve.feed.config import FeedConfig
from recserve.feed.memory import ServedMemory, UserPrefs
from recserve.feed.reference import FeedBuilder, FeedResult, Served

__all__ = ["FeedBuilder", "FeedConfig", "FeedResult", "Served", "ServedMemory", "UserPrefs"]
