"""recserve.features: the input-row layout, normalisation, and checks on what goes in."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from recserve.affinity import NO_POSITIVE_HOURS, Affinity
from recserve.features import (
    OUTCOMES,
    Context,
    FeatureSpec,
    ItemStats,
    UserFeatures,
    build_features,
)


def _inputs(n: int, d: int, seed: int) -> tuple[UserFeatures, np.ndarray, ItemStats, Context]:
    rng = np.random.default_rng(seed)
    user = UserFeatures(
        long_term=rng.standard_normal(d).astype(np.float32),
        session=rng.standard_normal(d).astype(np.float32),
        events=17,
        session_length=4,
        impressions=40,
        completes=12,
        skips=9,
    )
    items = rng.standard_normal((n, d)).astype(np.float32)
    impressions = rng.integers(0, 500, n)
    stats = ItemStats(
        impressions=impressions,
        **{o: rng.integers(0, 1 + impressions // 3) for o in OUTCOMES},
        created_at=1_700_000_000.0 - rng.uniform(0, 1e6, n),
    )
    return user, items, stats, Context(now=1_700_000_000.0, position=np.arange(n))


def test_default_layout_is_211_wide_at_64_dims() -> None:
    spec = FeatureSpec()
    assert spec.dims == 64
    assert spec.width == 211
    assert sum(width for _, width in spec.fields) == 211
    assert len(spec.names) == len(set(spec.names)) == 211
    assert spec.names[0] == "user_long[0]"
    assert spec.names[-1] == "log_hours_since_region_positive"


def test_version_1_layout_stops_at_position_208_wide() -> None:
    spec = FeatureSpec(version=1)
    assert spec.width == 208
    assert spec.names[-1] == "position"
    assert FeatureSpec.from_dict(spec.to_dict()).width == 208


def test_affinity_fills_the_version_2_columns() -> None:
    spec = FeatureSpec(dims=8)
    user, items, stats, context = _inputs(3, 8, seed=1)
    affinity = Affinity(
        related=np.array([0.5, 0.0, 2.0], np.float32),
        positive_similarity=np.array([0.9, -0.1, 0.0], np.float32),
        region_positive_hours=np.array([0.0, 3.0, NO_POSITIVE_HOURS], np.float32),
    )
    rows = build_features(spec, user, items, stats, context, affinity=affinity, normalize=False)
    assert rows[:, spec.slice("related_score")].ravel().tolist() == [0.5, 0.0, 2.0]
    assert np.allclose(rows[:, spec.slice("positive_similarity")].ravel(), [0.9, -0.1, 0.0])
    assert np.allclose(
        rows[:, spec.slice("log_hours_since_region_positive")].ravel(),
        np.log1p([0.0, 3.0, NO_POSITIVE_HOURS]),
    )
    # without affinity: as for a user with no recent positives
    plain = build_features(spec, user, items, stats, context, normalize=False)
    assert plain[:, spec.slice("related_score")].ravel().tolist() == [0.0, 0.0, 0.0]
    assert np.allclose(plain[:, -1], np.log1p(NO_POSITIVE_HOURS))
    # a NaN names the field
    bad = Affinity(
        affinity.related * np.nan, affinity.positive_similarity, affinity.region_positive_hours
    )
    with pytest.raises(ValueError, match="affinity.related"):
        build_features(spec, user, items, stats, context, affinity=bad)


@pytest.mark.parametrize("dims", [1, 8, 64, 96])
def test_width_is_three_times_dims_plus_nineteen(dims: int) -> None:
    spec = FeatureSpec(dims=dims)
    user, items, stats, context = _inputs(5, dims, seed=dims)
    assert spec.width == 3 * dims + 19
    rows = build_features(spec, user, items, stats, context)
    assert rows.shape == (5, spec.width)
    assert rows.dtype == np.float32


def test_columns_hold_their_definitions() -> None:
    spec = FeatureSpec(dims=4)
    user, items, stats, context = _inputs(3, 4, seed=1)
    rows = build_features(spec, user, items, stats, context, normalize=False)
    long_term = np.asarray(user.long_term)
    np.testing.assert_allclose(rows[:, spec.slice("item")], items)
    np.testing.assert_allclose(
        rows[:, spec.slice("dot_long_item")][:, 0], items @ long_term, rtol=1e-5
    )
    mean, strength = spec.priors["like"]
    imps = np.asarray(stats.impressions, dtype=np.float64)
    expected = (np.asarray(stats.like) + mean * strength) / (imps + strength)
    np.testing.assert_allclose(rows[:, spec.slice("item_like_rate")][:, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(
        rows[:, spec.slice("item_log_impressions")][:, 0], np.log1p(imps), rtol=1e-6
    )
    np.testing.assert_allclose(rows[:, spec.slice("position")][:, 0], [0, 1, 2])
    np.testing.assert_allclose(rows[:, spec.slice("user_log_events")], np.log1p(17), rtol=1e-6)


def test_one_user_for_all_candidates_equals_one_user_per_row() -> None:
    """Serving passes one user's vectors; training passes one per row: same rows."""
    spec = FeatureSpec(dims=16)
    user, items, stats, context = _inputs(7, 16, seed=2)
    per_row = UserFeatures(
        long_term=np.tile(np.asarray(user.long_term), (7, 1)),
        session=np.tile(np.asarray(user.session), (7, 1)),
        events=np.full(7, 17),
        session_length=np.full(7, 4),
        impressions=np.full(7, 40),
        completes=np.full(7, 12),
        skips=np.full(7, 9),
    )
    np.testing.assert_array_equal(
        build_features(spec, user, items, stats, context),
        build_features(spec, per_row, items, stats, context),
    )


def test_fit_normalises_training_rows_to_zero_mean_unit_std() -> None:
    spec = FeatureSpec(dims=8)
    user, items, stats, context = _inputs(500, 8, seed=3)
    raw = build_features(spec, user, items, stats, context, normalize=False)
    fitted = spec.fit(raw)
    x = build_features(fitted, user, items, stats, context)
    varying = raw.std(axis=0) > 1e-3
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=0)[varying], 1.0, rtol=1e-3)
    assert not varying.all()  # one user: user columns are constant ...
    assert fitted.std is not None
    assert (fitted.std[~varying] == 1.0).all()


def test_normalisation_round_trips_through_to_dict_and_json() -> None:
    spec = FeatureSpec(dims=8)
    user, items, stats, context = _inputs(50, 8, seed=4)
    raw = build_features(spec, user, items, stats, context, normalize=False)
    fitted = spec.fit(raw)
    again = FeatureSpec.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again.names == fitted.names
    assert again.priors == fitted.priors
    np.testing.assert_array_equal(again.normalize(raw), fitted.normalize(raw))
    np.testing.assert_allclose(again.denormalize(again.normalize(raw)), raw, rtol=1e-5, atol=1e-5)


def test_spec_of_another_version_is_refused() -> None:
    data = FeatureSpec().to_dict()
    data["version"] = 3
    with pytest.raises(ValueError, match="version 3 is not supported"):
        FeatureSpec.from_dict(data)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda u, i, s, c: (u, i[:, :-1], s, c), "items"),
        (lambda u, i, s, c: (UserFeatures(np.zeros(7), u.session), i, s, c), "user.long_term"),
        (
            lambda u, i, s, c: (UserFeatures(u.long_term, np.full(8, np.nan)), i, s, c),
            "user.session",
        ),
        (lambda u, i, s, c: (u, np.where(np.eye(4, 8) > 0, np.nan, i), s, c), "items"),
        (lambda u, i, s, c: (u, i, ItemStats(impressions=np.zeros(3)), c), "stats.impressions"),
        (lambda u, i, s, c: (u, i, ItemStats(like=-np.ones(4)), c), "stats.like"),
        (lambda u, i, s, c: (u, i, s, Context(now=np.nan)), "context.now"),
    ],
)
def test_bad_input_raises_value_error_naming_the_field(change: object, field: str) -> None:
    spec = FeatureSpec(dims=8)
    args = change(*_inputs(4, 8, seed=5))  # type: ignore[operator]
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        build_features(spec, *args)


def test_mean_without_std_is_refused() -> None:
    with pytest.raises(ValueError, match="together"):
        FeatureSpec(dims=4, mean=np.zeros(32, dtype=np.float32))


def test_building_rows_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "from recserve.features import FeatureSpec, UserFeatures, ItemStats, Context, "
        "build_features\n"
        "rows = build_features(FeatureSpec(), UserFeatures(np.zeros(64), np.zeros(64)),"
        " np.ones((300, 64)), ItemStats(), Context(now=0.0))\n"
        "assert rows.shape == (300, 211)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
