"""A state machine is a table of allowed transitions; anything not in it is refused."""

from __future__ import annotations


class IllegalTransition(Exception):
    def __init__(self, machine: str, state: str, event: str):
        super().__init__(f"{machine}: event {event!r} is not allowed in state {state!r}")
        self.machine, self.state, self.event = machine, state, event


class StateMachine:
    def __init__(self, name: str, table: dict[tuple[str, str], str], final: set[str]):
        self.name, self.table, self.final = name, table, final

    def next(self, state: str, event: str) -> str:
        try:
            return self.table[(state, event)]
        except KeyError:
            raise IllegalTransition(self.name, state, event) from None

    def allows(self, state: str, event: str) -> bool:
        return (state, event) in self.table

    def sources(self, event: str) -> list[str]:
        """The states from which `event` is allowed: the WHERE clause of a conditional UPDATE."""
        return sorted(s for (s, e) in self.table if e == event)
