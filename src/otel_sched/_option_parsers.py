"""Option values: one parser per kind of option, for an environment string or a value from code.

Each parser returns the typed value, or raises :class:`_Invalid` (a ``ValueError``) or
``TypeError`` with what was expected; :mod:`otel_sched._config` puts that into the message
naming the option (code) or the variable (environment).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Final

from .scheduling._task import PriorityClass

__all__ = ["POLICY_NAMES"]

POLICY_NAMES: Final = ("fifo", "priority", "fair", "predictive", "deadline", "priority_fair")


class _Invalid(ValueError):
    """A value that does not parse; the message says what was expected."""


def _int(minimum: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool):
            raise _Invalid(f"an integer >= {minimum}")
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise _Invalid(f"an integer >= {minimum}") from None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise TypeError(f"an integer >= {minimum}")
        if value < minimum:
            raise _Invalid(f"an integer >= {minimum}")
        return value

    return parse


def _number(minimum: float, *, exclusive: bool = False) -> Callable[[object], float]:
    bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"

    def parse(value: object) -> float:
        if isinstance(value, bool):
            raise TypeError(f"a number {bound}")
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise _Invalid(f"a number {bound}") from None
        if not isinstance(value, int | float):
            raise TypeError(f"a number {bound}")
        value = float(value)
        if not math.isfinite(value) or value < minimum or (exclusive and value == minimum):
            raise _Invalid(f"a finite number {bound}")
        return value

    return parse


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise _Invalid("true or false")
    raise TypeError("a bool")


def _policy(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"one of {', '.join(POLICY_NAMES)}")
    name = value.strip().lower().replace("-", "_")
    if name not in POLICY_NAMES:
        raise _Invalid(f"one of {', '.join(POLICY_NAMES)}")
    return name


def _optional_str(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("an attribute name (str) or None")
    stripped = value.strip()
    return stripped or None


def _tenant_key(value: object) -> str | None:
    from .scheduling._tenancy import parse_tenant_sources, render_sources

    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("an attribute name, baggage:<key>, a comma list of them, or None")
    if not value.strip():
        return None
    try:
        return render_sources(parse_tenant_sources(value))
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _pairs(value: object, expected: str) -> list[tuple[object, object]]:
    """``"a=1,b=2"`` or a mapping, as (key, raw value) pairs; the shape only, values unchecked."""
    if isinstance(value, Mapping):
        return list(value.items())
    if not isinstance(value, str):
        raise TypeError(expected)
    items: list[tuple[object, object]] = []
    for part in value.split(","):
        if not part.strip():
            continue
        key, sep, raw = part.partition("=")
        if not sep or not key.strip():
            raise _Invalid(expected)
        items.append((key.strip(), raw.strip()))
    return items


def _weights(value: object) -> Mapping[str, float]:
    """``"acme=2,globex=0.5"`` or a mapping of tenant to a positive weight."""
    expected = "tenant=weight pairs with positive weights, e.g. 'acme=2,globex=0.5'"
    parse = _number(0.0, exclusive=True)
    out: dict[str, float] = {}
    for tenant, weight in _pairs(value, expected):
        if not isinstance(tenant, str):
            raise TypeError(expected)
        try:
            out[tenant] = parse(weight)
        except (TypeError, _Invalid):
            raise _Invalid(expected) from None
    return out


def _max_ages(value: object) -> Mapping[PriorityClass, float]:
    """``"high=2000,normal=10000,low=30000"`` (milliseconds) or a mapping."""
    expected = "class=milliseconds pairs for low/normal/high, e.g. 'high=2000,low=60000'"
    items = _pairs(value, expected)
    out = dict(_DEFAULT_MAX_AGES)
    parse = _number(0.0, exclusive=True)
    for cls_name, millis in items:
        try:
            out[PriorityClass.parse(cls_name)] = parse(millis)
        except (TypeError, ValueError):
            raise _Invalid(expected) from None
    return out


def _rules(value: object) -> object:
    """Rule text is parsed here, so a syntax error surfaces at configuration time.

    From code a :class:`~otel_sched.scheduling._rule_syntax.RuleSyntaxError` (a ``ValueError`` naming the
    rule, its index and the offending token) propagates; from the environment it becomes a warning.
    """
    from .scheduling._rule_syntax import parse_rules

    if isinstance(value, str):
        return parse_rules(value)
    if value is None or isinstance(value, list | tuple) or callable(value):
        return value
    raise TypeError("a rule string, a sequence of rules/callables, or None")


def _optional_mib(value: object) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _number(0.0, exclusive=True)(value)


def _endpoints(value: object) -> tuple[str, ...]:
    from .otlp._exporters import parse_endpoints

    if not isinstance(value, str | list | tuple):
        raise TypeError("a comma-separated string or a list of http(s)://host:port URLs")
    try:
        return tuple(parse_endpoints(value))
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


_DEFAULT_MAX_AGES: Final[Mapping[PriorityClass, float]] = {
    PriorityClass.HIGH: 2_000.0,
    PriorityClass.NORMAL: 10_000.0,
    PriorityClass.LOW: 30_000.0,
}
