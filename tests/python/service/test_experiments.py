"""recserve.service.experiments: stable, weighted, independent arm assignment."""

from __future__ import annotations

from recserve.service.experiments import Experiments
from recserve.service.settings import Arm, Experiment


def test_assignment_is_stable_and_follows_the_weights() -> None:
    experiments = Experiments(
        [Experiment(name="e", arms=(Arm(name="a", weight=3), Arm(name="b", weight=1)))]
    )
    first = {f"u{i}": experiments.assign(f"u{i}").label for i in range(4000)}
    again = {
        f"u{i}": Experiments(experiments.experiments).assign(f"u{i}").label for i in range(4000)
    }
    assert first == again
    share = sum(label == "e:b" for label in first.values()) / 4000
    assert 0.22 < share < 0.28


def test_later_experiments_override_model_and_merge_blends() -> None:
    experiments = Experiments(
        [
            Experiment(name="one", arms=(Arm(name="x", model="m1", blend={"like": 1.0}),)),
            Experiment(name="two", arms=(Arm(name="y", model="m2", blend={"share": 2.0}),)),
        ]
    )
    assignment = experiments.assign("anyone")
    assert assignment.label == "one:x,two:y"
    assert assignment.model == "m2"
    assert assignment.blend == {"like": 1.0, "share": 2.0}


def test_no_experiments_no_label() -> None:
    assert Experiments([]).assign("u").label is None
