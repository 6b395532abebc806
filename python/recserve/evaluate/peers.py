"""Peers: the simple real-time recommenders that ``recserve eval`` (and the demo) run beside the
engine, so every table compares recserve with what a small team would deploy first.

Both work on integer item rows ``0 .. n_items - 1`` (the catalogue's order) and any hashable
user id, learn from engagements only (one per user and item: later ones are ignored), and
score every item for a user (``scores(user) -> float32[n_items]``). Pure numpy.

**CoOccurrence** (item-to-item collaborative filtering, updated online).
``C[i, j]`` counts the users who engaged with both ``i`` and ``j`` so far: ``engaged(user, i)``
pairs ``i`` with each item the user engaged with before. The user's score vector is

    scores(user) = sum over the user's engaged items h_0, h_1, ... (newest first, age a = 0, 1, ...)
                   of decay**a * C'[h_a, :]

over the newest ``window`` items (``None``: the whole history; ages where ``decay**a`` is below
``1e-4`` are dropped). ``normalize="cosine"``: ``C'[i, j] = C[i, j] / sqrt(n_i * n_j)`` with
``n_i`` the users who engaged with ``i`` (so a blockbuster does not neighbour everything);
``"none"``: the raw counts. Settings: ``decay`` in (0, 1] (1: every item of the window
counts the same), ``window``, ``normalize``. Rows are sparse (a neighbour array and a count
array per item, appended to and merged now and then), so memory is at most twice the distinct
co-engaged pairs (8 bytes each), not ``n_items**2``; an engagement costs one append per earlier
item of the user, a score the entries of the rows it reads. ``with_settings`` gives a view
that shares the counts with other scoring settings
(how the replay tunes them in one pass).

**ALSFoldIn** (implicit matrix factorisation, item factors frozen, users folded in online).
``fit(users, item_rows, weights)`` runs implicit ALS (Hu, Koren, Volinsky 2008): the
preference is 1 where a weight ``r > 0`` is given (0 elsewhere), with confidence
``1 + alpha * r``; ``iterations`` alternating exact least-squares passes minimise the
confidence-weighted squared error plus ``regularization * (|x_u|^2 + |y_i|^2)``, from seeded
random factors of size ``factors``. After the fit the item factors ``Y`` stay fixed (a model
trained by a batch job), and ``engaged(user, i)`` refits that user's vector by the closed-form
least squares against ``Y`` over all their engagements so far (weight 1 each), the "fold-in":
a user unseen at fit time gets a vector at their first engagement. ``scores(user) = Y @ x_u``
(zeros for a user with no vector; an item no one had engaged with at fit time scores 0).

Neither says anything for a user with no engagement yet; their callers serve popularity then
(as a deployment would), which is what ``has_history`` is for.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Hashable, Iterable, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["ALSFoldIn", "CoOccurrence", "top_unseen"]

Normalize = Literal["cosine", "none"]
_NEGLIGIBLE = 1e-4  # decay**age below this is dropped from a score
_BLOCK = 1 << 21  # ALS: floats of gathered factors held at once (16 MB)


class _Row:
    """One item's sparse co-occurrence row: neighbour rows and counts in ``array`` buffers
    (appended at Python speed, read by numpy without a copy). A co-engagement appends the
    neighbour with count 1; when the row has doubled since it was last compacted, repeated
    neighbours are merged (their counts summed), so memory stays within twice the distinct
    neighbours and an update never searches."""

    __slots__ = ("counts", "index", "limit")

    def __init__(self) -> None:
        self.index = array("i")
        self.counts = array("f")
        self.limit = 64

    def add(self, neighbours: list[int]) -> None:
        self.index.extend(neighbours)
        self.counts.extend([1.0] * len(neighbours))
        if len(self.index) > self.limit:
            self.compact()

    def add_one(self, neighbour: int) -> None:
        self.index.append(neighbour)
        self.counts.append(1.0)
        if len(self.index) > self.limit:
            self.compact()

    def compact(self) -> None:
        index = np.frombuffer(self.index, dtype=np.int32)
        unique, inverse = np.unique(index, return_inverse=True)
        summed = np.bincount(inverse, weights=np.frombuffer(self.counts, dtype=np.float32))
        self.index = array("i", unique.astype(np.int32).tobytes())
        self.counts = array("f", summed.astype(np.float32).tobytes())
        self.limit = max(64, 2 * len(self.index))


class _Counts:
    """What the views of one CoOccurrence share."""

    def __init__(self, n_items: int) -> None:
        self.rows = [_Row() for _ in range(n_items)]
        self.engagers = np.zeros(n_items, dtype=np.float64)  # n_i
        self.history: dict[Hashable, list[int]] = {}  # engaged rows, oldest first
        self.engaged: dict[Hashable, set[int]] = {}


class CoOccurrence:
    """Item-to-item co-occurrence, updated online (see the module doc)."""

    def __init__(
        self,
        n_items: int,
        *,
        decay: float = 0.8,
        window: int | None = None,
        normalize: Normalize = "cosine",
        _counts: _Counts | None = None,
    ) -> None:
        if n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {n_items}")
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        if normalize not in ("cosine", "none"):
            raise ValueError(f"normalize must be 'cosine' or 'none', got {normalize!r}")
        self.n_items = n_items
        self.decay = decay
        self.window = window
        self.normalize: Normalize = normalize
        self._c = _counts if _counts is not None else _Counts(n_items)

    def with_settings(
        self, *, decay: float, window: int | None, normalize: Normalize
    ) -> CoOccurrence:
        """A view with other scoring settings over the same counts (an engagement recorded
        through either is seen by both)."""
        return CoOccurrence(
            self.n_items, decay=decay, window=window, normalize=normalize, _counts=self._c
        )

    def settings(self) -> dict[str, object]:
        return {"decay": self.decay, "window": self.window, "normalize": self.normalize}

    def has_history(self, user: Hashable) -> bool:
        return bool(self._c.history.get(user))

    def engaged(self, user: Hashable, item_row: int) -> None:
        """Records an engagement: pairs the item with the user's earlier engaged items."""
        c = self._c
        if not 0 <= item_row < self.n_items:
            raise IndexError(f"item row {item_row} out of range 0..{self.n_items - 1}")
        done = c.engaged.setdefault(user, set())
        if item_row in done:
            return
        history = c.history.setdefault(user, [])
        if history:
            c.rows[item_row].add(history)
            rows = c.rows
            for earlier in history:
                rows[earlier].add_one(item_row)
        c.engagers[item_row] += 1.0
        done.add(item_row)
        history.append(item_row)

    def _ages(self, history_length: int) -> int:
        """How many of the newest engaged items a score reads."""
        ages = history_length
        if self.window is not None:
            ages = min(ages, self.window)
        if self.decay < 1.0:
            ages = min(ages, 1 + int(math.log(_NEGLIGIBLE) / math.log(self.decay)))
        return ages

    def scores(self, user: Hashable) -> npt.NDArray[np.float32]:
        """The decayed sum of the co-occurrence rows of the user's recent engaged items."""
        return self.scores_of_views(user, [self])[0]

    def scores_of_views(
        self, user: Hashable, views: Sequence[CoOccurrence]
    ) -> list[npt.NDArray[np.float32]]:
        """``[view.scores(user) for view in views]`` for views sharing these counts, reading
        each row once (how the tuning scores every setting)."""
        c = self._c
        if any(view._c is not c for view in views):
            raise ValueError("the views must share these counts (with_settings)")
        history = c.history.get(user, [])
        ages = [view._ages(len(history)) for view in views]
        most = max(ages, default=0)
        recent = history[::-1][:most]
        rows = [c.rows[h] for h in recent]
        lengths = np.array([len(r.index) for r in rows], dtype=np.int64)
        ends = np.cumsum(lengths)
        index = np.concatenate(
            [np.zeros(0, dtype=np.int32), *(np.frombuffer(r.index, dtype=np.int32) for r in rows)]
        )
        counts = np.concatenate(
            [np.zeros(0, np.float32), *(np.frombuffer(r.counts, dtype=np.float32) for r in rows)]
        )
        column = 1.0 / np.sqrt(np.maximum(c.engagers, 1.0))
        out = []
        for view, age in zip(views, ages, strict=True):
            if not age:
                out.append(np.zeros(self.n_items, dtype=np.float32))
                continue
            weights = view.decay ** np.arange(age, dtype=np.float64)
            if view.normalize == "cosine":
                weights /= np.sqrt(c.engagers[recent[:age]])
            end = int(ends[age - 1])
            entry = counts[:end] * np.repeat(weights, lengths[:age])
            score = np.bincount(index[:end], weights=entry, minlength=self.n_items) * (
                column if view.normalize == "cosine" else 1.0
            )
            out.append(score.astype(np.float32))
        return out


class ALSFoldIn:
    """Implicit ALS fitted once, users folded in on every engagement (see the module doc)."""

    def __init__(
        self,
        n_items: int,
        *,
        factors: int = 32,
        regularization: float = 0.1,
        alpha: float = 10.0,
        iterations: int = 15,
        seed: int = 0,
    ) -> None:
        if n_items < 1 or factors < 1 or iterations < 0:
            raise ValueError("n_items and factors must be >= 1, iterations >= 0")
        if regularization <= 0.0 or alpha < 0.0:
            raise ValueError("regularization must be > 0 and alpha >= 0")
        self.n_items = n_items
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.item_factors = np.zeros((n_items, factors), dtype=np.float64)
        self._scoring = np.zeros((n_items, factors), dtype=np.float32)
        self.user_factors: dict[Hashable, npt.NDArray[np.float64]] = {}
        self._history: dict[Hashable, dict[int, float]] = {}  # item row -> weight r
        self._gram = np.zeros((factors, factors))  # Y^T Y
        # per user folded in since the fit: the normal equations (matrix, right-hand side)
        self._normal: dict[Hashable, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
        self.fitted = False

    def settings(self) -> dict[str, object]:
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": self.iterations,
        }

    def has_history(self, user: Hashable) -> bool:
        """Whether the user has a vector (was in the fit or engaged since)."""
        return user in self.user_factors

    def fit(
        self, users: Sequence[Hashable], item_rows: Iterable[int], weights: Iterable[float]
    ) -> ALSFoldIn:
        """Fits user and item factors on the (user, item, weight) triples (a repeated pair
        sums its weights); the users' histories are these triples."""
        rows = np.fromiter(item_rows, dtype=np.int64)
        r = np.fromiter(weights, dtype=np.float64)
        if not len(users) == len(rows) == len(r):
            raise ValueError("users, item_rows and weights must have the same length")
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n_items):
            raise IndexError(f"an item row is out of range 0..{self.n_items - 1}")
        self._history = {}
        for user, item, weight in zip(users, rows.tolist(), r.tolist(), strict=True):
            if weight > 0:
                history = self._history.setdefault(user, {})
                history[item] = history.get(item, 0.0) + weight
        ids = list(self._history)
        u_of = {user: i for i, user in enumerate(ids)}
        pu = np.fromiter((u_of[u] for u, h in self._history.items() for _ in h), dtype=np.int64)
        pi = np.fromiter((i for h in self._history.values() for i in h), dtype=np.int64)
        pr = np.fromiter((w for h in self._history.values() for w in h.values()), dtype=np.float64)
        rng = np.random.default_rng(self.seed)
        scale = 0.1 / math.sqrt(self.factors)
        x = scale * rng.standard_normal((len(ids), self.factors))
        y = scale * rng.standard_normal((self.n_items, self.factors))
        y[np.bincount(pi, minlength=self.n_items) == 0] = 0.0  # no data: no factor
        by_item = np.argsort(pi, kind="stable")  # entries are grouped by user already
        for _ in range(self.iterations):
            x = self._solve_all(y, pu, pi, pr, len(ids))
            y = self._solve_all(x, pi[by_item], pu[by_item], pr[by_item], self.n_items)
        self.item_factors = y
        self._scoring = y.astype(np.float32)  # scores in float32: half the memory traffic
        self._gram = y.T @ y
        self.user_factors = {user: x[u_of[user]] for user in ids}
        self._normal = {}
        self.fitted = True
        return self

    def _solve_all(
        self,
        fixed: npt.NDArray[np.float64],
        keys: npt.NDArray[np.int64],
        other: npt.NDArray[np.int64],
        r: npt.NDArray[np.float64],
        n: int,
    ) -> npt.NDArray[np.float64]:
        """The least-squares factors of n rows (users or items) given the entries (sorted by
        ``keys``, the row each belongs to; ``other`` the fixed row): for row u,
        (F^T F + lambda I + F_u^T diag(alpha r) F_u) x_u = F_u^T (1 + alpha r); 0 without
        entries. Rows are batched by their number of entries (padded to a power of two with a
        zero row of no confidence), so each batch is one stacked matmul and one solve."""
        out = np.zeros((n, self.factors))
        if not len(keys):
            return out
        rows, starts, counts = np.unique(keys, return_index=True, return_counts=True)
        gram = fixed.T @ fixed + self.regularization * np.eye(self.factors)
        # row -1: the padding; the products in float32 (twice as fast), the solve in float64
        padded = np.vstack([fixed, np.zeros((1, self.factors))]).astype(np.float32)
        width = 1 << np.ceil(np.log2(counts)).astype(np.int64)
        for w in np.unique(width).tolist():
            sel = np.flatnonzero(width == w)
            for chunk in np.array_split(sel, max(1, len(sel) * w * self.factors // _BLOCK)):
                offsets = np.arange(w)
                take = starts[chunk, None] + offsets  # (rows, w) entry indices
                valid = offsets < counts[chunk, None]
                take = np.where(valid, take, 0)
                f = padded[np.where(valid, other[take], -1)]  # (rows, w, factors)
                c = np.where(valid, self.alpha * r[take], 0.0).astype(np.float32)
                p = valid.astype(np.float32)
                a = np.matmul((f * c[:, :, None]).transpose(0, 2, 1), f) + gram
                b = np.einsum("rw,rwf->rf", p + c, f).astype(np.float64)
                out[rows[chunk]] = np.linalg.solve(a, b[:, :, None])[:, :, 0]
        return out

    def _fold_in(self, user: Hashable, history: dict[int, float], item: int) -> None:
        """The user's vector refitted after ``item`` joined their history: the normal
        equations over the whole history are built at the user's first fold-in, then kept
        and updated by the new item's term (the item factors no longer change)."""
        normal = self._normal.get(user)
        if normal is None:
            items = np.fromiter(history, dtype=np.int64, count=len(history))
            c = self.alpha * np.fromiter(history.values(), dtype=np.float64, count=len(history))
            f = self.item_factors[items]
            a = self._gram + self.regularization * np.eye(self.factors) + (f * c[:, None]).T @ f
            normal = self._normal[user] = (a, (1.0 + c) @ f)
        else:
            y = self.item_factors[item]
            c1 = self.alpha * history[item]
            normal[0][...] += c1 * np.outer(y, y)
            normal[1][...] += (1.0 + c1) * y
        self.user_factors[user] = np.linalg.solve(*normal).astype(np.float64, copy=False)

    def engaged(self, user: Hashable, item_row: int) -> None:
        """Records an engagement (weight 1) and refits the user's vector (fold-in)."""
        if not 0 <= item_row < self.n_items:
            raise IndexError(f"item row {item_row} out of range 0..{self.n_items - 1}")
        history = self._history.setdefault(user, {})
        if item_row in history:
            return
        history[item_row] = 1.0
        if self.fitted:
            self._fold_in(user, history, item_row)

    def scores(self, user: Hashable) -> npt.NDArray[np.float32]:
        x = self.user_factors.get(user)
        if x is None:
            return np.zeros(self.n_items, dtype=np.float32)
        # einsum, not BLAS: a matrix-vector product this small gains nothing from BLAS threads,
        # which on a busy machine cost ten times the product itself
        out: npt.NDArray[np.float32] = np.einsum("if,f->i", self._scoring, x.astype(np.float32))
        return out


def top_unseen(
    scores: npt.NDArray[np.floating],
    seen: Sequence[int] | npt.NDArray[np.integer],
    k: int,
    tiebreak: npt.NDArray[np.floating] | None = None,
) -> list[int]:
    """The rows of the ``k`` highest scores, seen rows excluded, best first; equal scores in
    descending ``tiebreak`` (distinct values, e.g. popularity with catalogue order folded in),
    then in catalogue order."""
    s = np.array(scores, dtype=np.float32)  # a copy
    if len(seen):
        s[np.asarray(seen, dtype=np.int64)] = -np.inf
    m = min(k, len(s))
    if m <= 0:
        return []
    top = np.argpartition(s, len(s) - m)[len(s) - m :]
    kth = s[top].min()
    sure = top[s[top] > kth]
    # every unseen item at the boundary score, not only those argpartition picked
    tied = np.flatnonzero(s == kth) if kth > -np.inf else sure[:0]
    tb = tiebreak if tiebreak is not None else np.zeros(len(s))
    sure = sure[np.lexsort((sure, -tb[sure], -s[sure]))]
    tied = tied[np.lexsort((tied, -tb[tied]))][: m - len(sure)]
    return [*sure.tolist(), *tied.tolist()]
