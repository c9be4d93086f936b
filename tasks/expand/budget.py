"""The expansion budget: caps on real teacher calls, their tokens and their cost, never exceeded.

A call is admitted only if the worst case fits: its prompt estimate plus `max_tokens` of completion
on top of what was spent and what calls in flight have reserved. Settling replaces the reservation
with what the call really used, so the caps hold under any concurrency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from tasks.teachers import Completion


class BudgetExhausted(RuntimeError):
    """The next call would break a cap (`expand.max_calls`, `expand.max_tokens` or `expand.max_cost`)."""


@dataclass(frozen=True)
class Ticket:
    tokens: int
    cost: float


class Budget:
    """Thread-safe caps for a `CachedTeacher` gate; cache hits never reach it."""

    def __init__(self, max_calls: int, max_tokens: int, max_cost: float, price: Callable[[int, int], float]) -> None:
        self.max_calls, self.max_tokens, self.max_cost = max_calls, max_tokens, max_cost
        self.price = price  # (prompt_tokens, completion_tokens) -> cost, the teacher's own prices
        self.calls = 0
        self.tokens = 0
        self.cost = 0.0
        self._reserved_tokens = 0
        self._reserved_cost = 0.0
        self.exhausted_by: str | None = None
        self._lock = threading.Lock()

    def admit(self, prompt_tokens: int, max_tokens: int) -> Ticket:
        """Reserve the worst case of one call, or raise BudgetExhausted naming the cap."""
        ticket = Ticket(
            tokens=prompt_tokens + max_tokens,
            cost=self.price(prompt_tokens, max_tokens),
        )
        with self._lock:
            if self.calls + 1 > self.max_calls:
                self._stop("max_calls", f"{self.max_calls} calls")
            if self.tokens + self._reserved_tokens + ticket.tokens > self.max_tokens:
                self._stop("max_tokens", f"{self.max_tokens} tokens")
            if self.cost + self._reserved_cost + ticket.cost > self.max_cost + 1e-12:
                self._stop("max_cost", f"a cost of {self.max_cost}")
            self.calls += 1  # a failed call still counts: a paid API may have billed it
            self._reserved_tokens += ticket.tokens
            self._reserved_cost += ticket.cost
        return ticket

    def settle(self, ticket: object, completion: Completion | None) -> None:
        assert isinstance(ticket, Ticket)
        with self._lock:
            self._reserved_tokens -= ticket.tokens
            self._reserved_cost -= ticket.cost
            if completion is not None:
                self.tokens += completion.prompt_tokens + completion.completion_tokens
                self.cost += self.price(completion.prompt_tokens, completion.completion_tokens)

    def _stop(self, cap: str, limit: str) -> None:
        self.exhausted_by = self.exhausted_by or cap
        raise BudgetExhausted(f"expand budget reached: the next teacher call would exceed {limit} (expand.{cap})")
