"""Join each impression with the events that followed it, and turn those into labels.

An event joins the impression with the same ``request_id`` and ``item`` (and user). An event
without a ``request_id`` (or whose request is not in the log) joins the user's latest
impression of that item served at most ``window_s`` seconds before it. Anything else is
unattributed: it still happened (it moves the user's vectors in the replay), but it labels
no impression. An ``event_id`` seen before is a duplicate (delivery is at-least-once) and is
dropped.

An impression is a served item. One that no event of its user joined (not even an explicit
``impression`` event) is **served-not-viewed**: the user never reached its position, so it says
nothing about the item; ``viewed`` is False for it and its labels are all 0. The trainer learns
from viewed impressions only.

Labels per viewed impression, one column per head (``HEADS`` order):

============== ===========================================================================
complete       the longest watch reached ``complete_fraction`` (0.9) of the duration
replay, like,  an event of that type
share,
comment,
follow
skip           a fast skip: a skip event, or a longest watch under ``fast_skip_ms`` (3 s);
               a viewed impression with no watch event counts as watched for 0 ms
watch_frac     min(longest watch / duration, 1); 0 with no watch event (a soft label)
return         the user came back: any record of theirs (impression or event) starts a new
               session within ``return_window_s`` (a day) after the end of the session that
               holds this impression
============== ===========================================================================

**Sessions and returns.** A user's records (impressions and events, attributed or not) in time
order split into sessions wherever ``session_timeout_s`` (the update rule's
``session_timeout_seconds``, 1,800 s) passes without one; a session ends at its last record.
``return`` is 1 when the user's next session starts at most ``return_window_s`` after the end
of the impression's session. It is *censored* when that window runs past the end of the log
(the last record's time): whether the user would have come back is not known yet, so
``return_known`` is False and the trainer leaves the row out of that head's loss and AUC (it
is not a 0). The window must be longer than the session timeout: a new session starts only
after more than ``session_timeout_s`` without records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recserve.train.log import Event, Impression, Record

__all__ = ["HEADS", "Joined", "event_outcomes", "join"]

HEADS: tuple[str, ...] = (
    "complete",
    "replay",
    "like",
    "share",
    "comment",
    "follow",
    "skip",
    "watch_frac",
    "return",
)
_FLAGS = ("replay", "like", "share", "comment", "follow", "skip")

FAST_SKIP_MS = 3000
COMPLETE_FRACTION = 0.9
#: The ``return`` head's window: the next session starts within a day of this one's end.
RETURN_WINDOW_S = 86_400.0
#: The update rule's default session timeout (``UpdateRule.session_timeout_seconds``).
SESSION_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Joined:
    """The log in time order, with each record's impression number.

    ``timeline``: impressions and events sorted by ``ts`` (ties keep append order), duplicate
    events removed. ``impression_of[k]``: for an impression its own number (0, 1, … in time
    order), for an event the number of the impression it joined, -1 when unattributed.
    ``labels``: float32 [impressions, len(HEADS)], all 0 where not ``viewed``.
    ``viewed``: bool [impressions], whether any event joined the impression.
    ``return_known``: bool [impressions], False where the ``return`` label is censored.
    """

    timeline: list[Record]
    impression_of: npt.NDArray[np.int64]
    impressions: list[Impression]
    labels: npt.NDArray[np.float32]
    duplicates: int
    unattributed: int
    viewed: npt.NDArray[np.bool_]
    return_known: npt.NDArray[np.bool_]


def event_outcomes(
    event: Event,
    *,
    fast_skip_ms: int = FAST_SKIP_MS,
    complete_fraction: float = COMPLETE_FRACTION,
) -> tuple[str, ...]:
    """The per-impression outcomes (of ``recserve.features.OUTCOMES``) this one event shows."""
    if event.type == "watch":
        if event.duration_ms > 0 and event.watch_ms >= complete_fraction * event.duration_ms:
            return ("complete",)
        return ("skip",) if event.watch_ms < fast_skip_ms else ()
    if event.type in _FLAGS:
        return (event.type,)
    return ()


def join(
    records: Sequence[Record],
    *,
    window_s: float = 3600.0,
    fast_skip_ms: int = FAST_SKIP_MS,
    complete_fraction: float = COMPLETE_FRACTION,
    session_timeout_s: float = SESSION_TIMEOUT_S,
    return_window_s: float = RETURN_WINDOW_S,
) -> Joined:
    """Sort the records by time, join events to impressions and label every impression."""
    if window_s < 0:
        raise ValueError(f"window_s must be >= 0, got {window_s}")
    if not return_window_s > session_timeout_s > 0:
        raise ValueError(
            f"return_window_s ({return_window_s}) must exceed session_timeout_s "
            f"({session_timeout_s}) > 0: a new session starts only after the timeout"
        )
    order = sorted(range(len(records)), key=lambda k: records[k].ts)
    timeline: list[Record] = []
    impression_of: list[int] = []
    impressions: list[Impression] = []
    by_request: dict[tuple[str, int], int] = {}
    latest: dict[tuple[str, int], int] = {}
    seen_events: set[str] = set()
    duplicates = unattributed = 0
    watch_ms: list[int] = []
    duration_ms: list[int] = []
    flags: list[set[str]] = []
    viewed: list[bool] = []

    for k in order:
        record = records[k]
        if isinstance(record, Impression):
            number = len(impressions)
            impressions.append(record)
            by_request[(record.request_id, record.item)] = number
            latest[(record.user, record.item)] = number
            watch_ms.append(0)
            duration_ms.append(0)
            flags.append(set())
            viewed.append(False)
            timeline.append(record)
            impression_of.append(number)
            continue
        if record.event_id in seen_events:
            duplicates += 1
            continue
        seen_events.add(record.event_id)
        number = -1
        if record.request_id is not None:
            number = by_request.get((record.request_id, record.item), -1)
            if number >= 0 and impressions[number].user != record.user:
                number = -1
        if number < 0:
            candidate = latest.get((record.user, record.item), -1)
            if candidate >= 0 and record.ts - impressions[candidate].ts <= window_s:
                number = candidate
        timeline.append(record)
        impression_of.append(number)
        if number < 0:
            unattributed += 1
            continue
        viewed[number] = True
        if record.type == "watch":
            if record.watch_ms >= watch_ms[number]:
                watch_ms[number] = record.watch_ms
                duration_ms[number] = record.duration_ms
        elif record.type in _FLAGS:
            flags[number].add(record.type)

    labels = np.zeros((len(impressions), len(HEADS)), dtype=np.float32)
    seen = np.asarray(viewed, dtype=bool)
    if impressions:
        watch = np.asarray(watch_ms, dtype=np.float64)
        duration = np.asarray(duration_ms, dtype=np.float64)
        has_duration = duration > 0
        labels[:, HEADS.index("complete")] = has_duration & (watch >= complete_fraction * duration)
        for name in ("replay", "like", "share", "comment", "follow"):
            labels[:, HEADS.index(name)] = [name in f for f in flags]
        skip_event = np.array(["skip" in f for f in flags])
        labels[:, HEADS.index("skip")] = skip_event | (watch < fast_skip_ms)
        frac = np.divide(watch, duration, out=np.zeros_like(watch), where=has_duration)
        labels[:, HEADS.index("watch_frac")] = np.minimum(frac, 1.0)
    returned, return_known = _returns(timeline, impressions, session_timeout_s, return_window_s)
    if impressions:
        labels[:, HEADS.index("return")] = returned
        labels[~seen] = 0.0  # served, never reached: no outcome, not a 0 ms view
    return Joined(
        timeline,
        np.asarray(impression_of, dtype=np.int64),
        impressions,
        labels,
        duplicates,
        unattributed,
        seen,
        return_known,
    )


def _returns(
    timeline: Sequence[Record],
    impressions: Sequence[Impression],
    session_timeout_s: float,
    return_window_s: float,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(returned, known) per impression: see the module doc's sessions and returns."""
    returned = np.zeros(len(impressions), dtype=bool)
    known = np.zeros(len(impressions), dtype=bool)
    if not impressions:
        return returned, known
    times: dict[str, list[float]] = {}
    for record in timeline:  # in time order
        times.setdefault(record.user, []).append(record.ts)
    log_end = max(record.ts for record in timeline)
    # Per user: each record's session's end, and when the next session starts (inf: never).
    end_of: dict[str, npt.NDArray[np.float64]] = {}
    next_of: dict[str, npt.NDArray[np.float64]] = {}
    ts_of: dict[str, npt.NDArray[np.float64]] = {}
    for user, values in times.items():
        ts = np.asarray(values, dtype=np.float64)
        starts = np.flatnonzero(np.diff(ts, prepend=-np.inf) > session_timeout_s)
        session = np.cumsum(np.diff(ts, prepend=-np.inf) > session_timeout_s) - 1
        ends = np.append(ts[starts[1:] - 1], ts[-1])
        next_start = np.append(ts[starts[1:]], np.inf)
        ts_of[user], end_of[user], next_of[user] = ts, ends[session], next_start[session]
    for number, impression in enumerate(impressions):
        ts = ts_of[impression.user]
        k = int(np.searchsorted(ts, impression.ts, side="left"))  # a record at its own time
        end, next_start = end_of[impression.user][k], next_of[impression.user][k]
        known[number] = end + return_window_s <= log_end
        returned[number] = next_start - end <= return_window_s
    return returned, known
