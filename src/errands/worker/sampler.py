"""Job-type priority sampling (as gocraft/work): the order in which a pool tries its queues on
each fetch, drawn at random with probability proportional to each job type's weight. Pure."""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["PrioritySampler"]


class PrioritySampler:
    """``sample()`` -> [(job name, max_concurrency), ...] in the order to try them."""

    def __init__(self, types: Sequence[tuple[str, int, int]], rng: random.Random | None = None):
        """``types`` are (job name, weight, max_concurrency)."""
        self.types = list(types)
        self.rng = rng or random.Random()

    def sample(self) -> list[tuple[str, int]]:
        items = self.types
        if len(items) == 1:
            return [(items[0][0], items[0][2])]
        left = list(items)
        order: list[tuple[str, int]] = []
        while left:
            pick = self.rng.random() * sum(w for _n, w, _c in left)
            for i, (name, weight, limit) in enumerate(left):
                pick -= weight
                if pick < 0 or i == len(left) - 1:
                    order.append((name, limit))
                    left.pop(i)
                    break
        return order
