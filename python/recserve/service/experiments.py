"""A/B experiments from configuration: each user falls in one arm of each experiment, by a
stable hash of the experiment name and user id (the same arm on every request, process and
replica; independent between experiments). An arm may name a model version and/or blend
weights; where several experiments set them, the later one in the configuration wins."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from recserve.service.settings import Arm, Experiment

__all__ = ["Assignment", "Experiments"]


@dataclass(frozen=True)
class Assignment:
    arms: tuple[tuple[str, str], ...]  # (experiment, arm) per experiment
    model: str | None
    blend: Mapping[str, float] | None

    @property
    def label(self) -> str | None:
        """How the response and the impression log name it: ``exp:arm[,exp:arm…]``."""
        return ",".join(f"{e}:{a}" for e, a in self.arms) or None


def _unit(experiment: str, user_id: str) -> float:
    digest = hashlib.blake2b(f"{experiment}\0{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


class Experiments:
    def __init__(self, experiments: Sequence[Experiment]) -> None:
        self.experiments = tuple(experiments)

    def arm_of(self, experiment: Experiment, user_id: str) -> Arm:
        point = _unit(experiment.name, user_id) * sum(arm.weight for arm in experiment.arms)
        for arm in experiment.arms:
            point -= arm.weight
            if point < 0.0:
                return arm
        return experiment.arms[-1]

    def assign(self, user_id: str) -> Assignment:
        arms: list[tuple[str, str]] = []
        model: str | None = None
        blend: dict[str, float] | None = None
        for experiment in self.experiments:
            arm = self.arm_of(experiment, user_id)
            arms.append((experiment.name, arm.name))
            model = arm.model if arm.model is not None else model
            if arm.blend is not None:
                blend = {**(blend or {}), **arm.blend}
        return Assignment(tuple(arms), model, blend)
