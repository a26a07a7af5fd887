"""Reading the fields of a custom resource's spec, for both kinds' parsers.

The API server applies the CRD defaults, but the operator must not depend on it (older objects,
test servers without defaulting), so each parser applies the same defaults once.
"""

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class SpecError(ValueError):
    """A spec the operator cannot act on (normally rejected by the CRD schema already): each of its
    problems, which the message joins."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Problems:
    """A spec's problems, gathered while it is read, so that one reading names every one of them
    (the object's Degraded condition lists them all, not only the first)."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, problem: str) -> None:
        self.found.append(problem)

    def read(self, reader: Callable[[], T], fallback: T) -> T:
        """What `reader` reads, or `fallback` once its problems are noted (reading goes on)."""
        try:
            return reader()
        except SpecError as e:
            self.found.extend(e.problems)
            return fallback

    def check(self, reader: Callable[[], T]) -> T:
        """What `reader` reads; a problem it cannot read past ends the reading with every problem."""
        try:
            result = reader()
        except SpecError as e:
            raise SpecError(*self.found, *e.problems) from None
        if self.found:
            raise SpecError(*self.found)
        return result


def mapping(raw: Any, field: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{field} must be an object")
    return raw
