"""Throttling of failed sign-ins: after ``per_client`` failures from one client within
``window`` seconds, that client's attempts are refused (429) until the oldest failure leaves
the window; after ``overall`` failures from all clients together, every attempt is refused
the same way (a guesser spreading over many addresses). Kept in the memory of the process."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["Throttle"]

MAX_CLIENTS = 10_000  # remembered clients (least recently failing forgotten first)


class Throttle:
    def __init__(
        self,
        now: Callable[[], float],
        per_client: int = 10,
        overall: int = 100,
        window: float = 300.0,
    ) -> None:
        self.now = now
        self.per_client = per_client
        self.overall = overall
        self.window = window
        self.clients: OrderedDict[str, deque[float]] = OrderedDict()
        self.everyone: deque[float] = deque()

    def _trim(self, failures: deque[float], now: float) -> deque[float]:
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def retry_after(self, client: str | None) -> float:
        """Seconds until ``client`` may try again (0: it may try now)."""
        now = self.now()
        waits = [0.0]
        everyone = self._trim(self.everyone, now)
        if len(everyone) >= self.overall:
            waits.append(everyone[-self.overall] + self.window - now)
        mine = self._trim(self.clients.get(client or "", deque()), now)
        if len(mine) >= self.per_client:
            waits.append(mine[-self.per_client] + self.window - now)
        return max(waits)

    def failed(self, client: str | None) -> None:
        now = self.now()
        key = client or ""
        mine = self.clients.pop(key, None) or deque(maxlen=self.per_client)
        mine.append(now)
        self.clients[key] = mine
        while len(self.clients) > MAX_CLIENTS:
            self.clients.popitem(last=False)
        self.everyone.append(now)
        while len(self.everyone) > self.overall:
            self.everyone.popleft()
