import numpy as np

from recserve.quality import ItemQuality


def _stats(views, completions, skips, match_sum):
    """Counters of items met ``views`` times (impressions), with these matches summed."""
    return {
        "impressions": np.asarray(views, dtype=np.uint64),
        "completions": np.asarray(completions, dtype=np.uint64),
        "fast_skips": np.asarray(skips, dtype=np.uint64),
        "impression_match_sum": np.asarray(match_sum, dtype=np.float64),
    }


def test_curve_explains_completion_by_match():
    # completion rate = 0.2 + 0.5 * mean match, exactly, over items of different matches
    views = np.array([100, 100, 100, 100])
    mean_match = np.array([0.0, 0.2, 0.4, 0.8])
    completions = np.round(views * (0.2 + 0.5 * mean_match))
    q = ItemQuality()
    q.refit(_stats(views, completions, np.zeros(4), views * mean_match))
    a, b = q.complete_line
    assert abs(a - 0.2) < 1e-9
    assert abs(b - 0.5) < 1e-9
    lift, _ = q.posterior(_stats(views, completions, np.zeros(4), views * mean_match))
    assert np.allclose(lift, 0.0, atol=1e-9)  # no item beats what its audience predicted


def test_an_item_that_beats_its_audience_lifts_and_few_views_shrink():
    q = ItemQuality(prior_views=10)
    q.complete_line = (0.3, 0.0)
    # the same excess rate (+0.4), on 5 and on 100 views; and a poor item with many skips
    lift, _ = q.posterior(_stats([5, 100, 100], [3.5, 70, 10], [0, 0, 60], [0, 0, 0]))
    assert 0 < lift[0] < lift[1]
    assert lift[2] < 0


def test_optimism_favours_few_views():
    q = ItemQuality(optimism=1.0)
    _, bonus = q.posterior(_stats([0, 3, 99], [0, 0, 0], [0, 0, 0], [0, 0, 0]))
    assert bonus[0] == 1.0
    assert bonus[0] > bonus[1] > bonus[2] > 0


def test_refit_without_views_keeps_the_curve():
    q = ItemQuality()
    q.complete_line = (0.3, 0.1)
    q.refit(_stats([0, 0], [0, 0], [0, 0], [0, 0]))
    assert q.complete_line == (0.3, 0.1)


def test_fast_skips_reported_as_skip_events_count_against_the_item():
    # Both met by 20 users; the poor one's 15 fast skips came as skip events (no watch).
    q = ItemQuality(prior_views=10)
    q.refit(_stats([20, 20], [10, 2], [2, 15], [0.0, 0.0]))
    lift, _ = q.posterior(_stats([20, 20], [10, 2], [2, 15], [0.0, 0.0]))
    assert lift[0] > 0 > lift[1]
