"""Priority rules, compiled: the :class:`PriorityClassifier` the classify stage calls per item.

Rules (the language is in :mod:`._rule_syntax`) are compiled once per signal: each condition
becomes a closure over pre-parsed values, so nothing is re-parsed and no regular expression runs
per item.

* Evaluation never raises: a rule that raises, or a callable that returns something that is
  not a class, counts as no match and increments :attr:`PriorityClassifier.errors`.
* Rules that can never match a signal (``kind`` for logs, ``severity`` for spans, ...) are
  dropped when compiling for that signal, and rules after one that always matches are dropped.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, TypeAlias

from opentelemetry.trace import Status

from .._sdk_fields import FAST_ATTRIBUTES, FAST_SPAN, FAST_SPANS
from ._rule_syntax import (
    _KIND,
    _ORDER_OPS,
    _STATUS,
    DEFAULT_RULES,
    Condition,
    Rule,
    _severity_bounds,
    _split_field,
    parse_rules,
)
from ._task import PriorityClass, Signal

__all__ = ["PriorityClassifier", "RuleFunction", "RuleLike", "compile_rules"]

_logger = logging.getLogger(__name__)

_SPAN_ONLY = frozenset({"status", "kind", "name"})
_LOG_ONLY = frozenset({"severity", "event_name"})

RuleFunction: TypeAlias = Callable[[Any], PriorityClass | int | str | None]
RuleLike: TypeAlias = Rule | str | RuleFunction

# --- compilation ---------------------------------------------------------------------------

_Predicate = Callable[[Any], bool]
_Matcher = Callable[[Any], "PriorityClass | None"]

_ORDER_FN: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


def _always(item: Any) -> bool:
    return True


def _scope_name(item: Any) -> Any:
    scope = item.instrumentation_scope
    return None if scope is None else scope.name


def _event_name(item: Any) -> Any:
    return item.log_record.event_name or None


# The attribute getters below read the dict inside the SDK's BoundedAttributes: its ``get`` is
# Mapping.get, which raises and catches KeyError on every miss (several times slower), and
# ReadableSpan.attributes builds a new MappingProxyType on every access.


def _span_attributes(item: Any) -> Any:
    if item.__class__ is not FAST_SPAN:  # another span class, or an SDK whose fields moved
        return item.attributes
    attributes = item._attributes
    return attributes._dict if attributes.__class__ is FAST_ATTRIBUTES else attributes


def _log_attributes(item: Any) -> Any:
    attributes = item.log_record.attributes
    return attributes._dict if attributes.__class__ is FAST_ATTRIBUTES else attributes


def _resource_attributes(item: Any) -> Any:
    resource = item.resource
    if resource is None:
        return None
    attributes = resource.attributes
    return attributes._dict if attributes.__class__ is FAST_ATTRIBUTES else attributes


def _attr_text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _attr_number(value: Any) -> Any:
    """The attribute as a number, or None if it isn't one."""
    cls = value.__class__
    if cls is int or cls is float:
        return value
    if cls is str:
        try:
            return float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def _attr_predicate(
    get_attributes: Callable[[Any], Any], key: str, op: str, values: tuple[str, ...]
) -> _Predicate:
    if op == "exists":

        def exists(item: Any) -> bool:
            attributes = get_attributes(item)
            return bool(attributes) and key in attributes

        return exists

    if op in _ORDER_OPS:
        compare = _ORDER_FN[op]
        threshold = float(values[0])

        def ordered(item: Any) -> bool:
            attributes = get_attributes(item)
            if not attributes:
                return False
            value = attributes.get(key)
            if value is None:
                return False
            number = _attr_number(value)
            return number is not None and compare(number, threshold)

        return ordered

    targets = frozenset(values)
    if op in ("==", "in"):

        def member(item: Any) -> bool:
            attributes = get_attributes(item)
            if not attributes:
                return False
            value = attributes.get(key)
            if value is None:
                return False
            if value.__class__ is not str:
                value = _attr_text(value)
            return value in targets

        return member

    def not_member(item: Any) -> bool:
        attributes = get_attributes(item)
        if not attributes:
            return False
        value = attributes.get(key)
        if value is None:
            return False
        if value.__class__ is not str:
            value = _attr_text(value)
        return value not in targets

    return not_member


def _enum_predicate(get: Callable[[Any], Any], op: str, members: tuple[Any, ...]) -> _Predicate:
    # Tuples, not sets: Enum.__hash__ is Python code while identity checks in a tuple are not.
    if op == "exists":
        return _always
    if op in ("==", "in"):
        return lambda item: get(item) in members
    return lambda item: get(item) not in members


def _severity_predicate(op: str, values: tuple[str, ...]) -> _Predicate:
    if op == "exists":
        return lambda item: item.log_record.severity_number is not None
    bounds = [_severity_bounds(v) for v in values]
    if op in _ORDER_OPS:
        compare = _ORDER_FN[op]
        low, high = bounds[0]
        threshold = low if op in (">=", "<") else high

        def ordered(item: Any) -> bool:
            number = item.log_record.severity_number
            # ``_value_`` is a plain attribute; ``.value`` goes through a descriptor.
            return compare(0 if number is None else number._value_, threshold)

        return ordered

    numbers = frozenset(n for low, high in bounds for n in range(low, high + 1))
    negate = op in ("!=", "not in")

    def member(item: Any) -> bool:
        number = item.log_record.severity_number
        return ((0 if number is None else number._value_) in numbers) is not negate

    return member


def _text_predicate(
    get: Callable[[Any], Any], op: str, values: tuple[str, ...], prefixes: bool
) -> _Predicate:
    if op == "exists":
        return lambda item: get(item) is not None
    exact = frozenset(v for v in values if not (prefixes and v.endswith("*")))
    starts = tuple(v[:-1] for v in values if prefixes and v.endswith("*"))
    positive = op in ("==", "in")
    if not starts:
        if positive:
            return lambda item: get(item) in exact
        return lambda item: (value := get(item)) is not None and value not in exact

    def matches(item: Any) -> bool:
        value = get(item)
        if value is None:
            return False
        return (value in exact or value.startswith(starts)) is positive

    return matches


_status_code_of = attrgetter("status.status_code")


def _span_status_code(item: Any) -> Any:
    # ReadableSpan.status and Status.status_code are properties returning a field: for the exact
    # SDK classes (the usual case) the fields are read directly, as the encoder does.
    if item.__class__ in FAST_SPANS:
        status = item._status
        if status.__class__ is Status:
            return status._status_code
    return _status_code_of(item)


def _compile_condition(condition: Condition, signal: Signal) -> _Predicate | None:
    """A predicate for the condition, or None if it can never hold for ``signal``."""
    field, op, values = condition.field, condition.op, condition.values
    if field == "*":
        return _always
    base, key = _split_field(field)
    if (signal is Signal.LOGS and base in _SPAN_ONLY) or (signal is Signal.TRACES and base in _LOG_ONLY):
        return None
    if base == "attr":
        getter = _span_attributes if signal is Signal.TRACES else _log_attributes
        return _attr_predicate(getter, key, op, values)
    if base == "resource":
        return _attr_predicate(_resource_attributes, key, op, values)
    if base == "status":
        return _enum_predicate(_span_status_code, op, tuple(_STATUS[v] for v in values))
    if base == "kind":
        return _enum_predicate(attrgetter("kind"), op, tuple(_KIND[v] for v in values))
    if base == "severity":
        return _severity_predicate(op, values)
    if base == "name":
        return _text_predicate(attrgetter("name"), op, values, prefixes=False)
    if base == "event_name":
        return _text_predicate(_event_name, op, values, prefixes=False)
    return _text_predicate(_scope_name, op, values, prefixes=True)


def _compile_rule(rule: Rule, signal: Signal) -> tuple[_Matcher, bool] | None:
    """(matcher, always matches) for the rule, or None if it can never match ``signal``."""
    predicates: list[_Predicate] = []
    for condition in rule.conditions:
        predicate = _compile_condition(condition, signal)
        if predicate is None:
            return None
        if predicate is not _always:
            predicates.append(predicate)
    priority = rule.priority
    if not predicates:
        return (lambda item: priority), True
    if len(predicates) == 1:
        (first,) = predicates
        return (lambda item: priority if first(item) else None), False
    if len(predicates) == 2:
        first, second = predicates
        return (lambda item: priority if first(item) and second(item) else None), False
    chain = tuple(predicates)

    def match_all(item: Any) -> PriorityClass | None:
        for predicate in chain:
            if not predicate(item):
                return None
        return priority

    return match_all, False


def _wrap_callable(function: RuleFunction) -> _Matcher:
    def call(item: Any) -> PriorityClass | None:
        result = function(item)
        if result is None or result.__class__ is PriorityClass:
            return result
        # Raises ValueError for "urgent", 7, True, ...: counted as an error by the classifier.
        return PriorityClass.parse(result)

    return call


class PriorityClassifier:
    """Compiled rules for one signal: ``classifier(item)`` returns the item's class.

    ``errors`` counts evaluations that raised (or callables that returned a non-class); they
    are treated as no match. The increment is not atomic, which is fine for a statistic.
    """

    __slots__ = ("_matchers", "default", "errors", "rules", "signal")

    def __init__(
        self,
        rules: tuple[RuleLike, ...],
        matchers: tuple[_Matcher, ...],
        default: PriorityClass,
        signal: Signal,
    ) -> None:
        self.rules = rules
        self._matchers = matchers
        self.default = default
        self.signal = signal
        self.errors = 0

    def __call__(self, item: Any) -> PriorityClass:
        for match in self._matchers:
            try:
                priority = match(item)
            except Exception:  # noqa: BLE001 - a rule may raise anything: counted, logged once by _raised
                self._raised()
                continue
            if priority is not None:
                return priority
        return self.default

    def _raised(self) -> None:
        """Count a rule that raised (called from its ``except``); logs the first one only."""
        self.errors += 1
        if self.errors == 1:
            # Once only: a broken rule would otherwise log for every item.
            _logger.warning(
                "a priority rule raised; treating it as no match (counted in errors)", exc_info=True
            )

    @property
    def status_rule_only(self) -> bool:
        """For spans, the default rules alone: HIGH for an ERROR status, else NORMAL (what an
        express batch counts without classifying)."""
        return (
            self.signal is Signal.TRACES
            and self.default is PriorityClass.NORMAL
            and self.rules == DEFAULT_RULES[:1]
        )

    def function(self) -> Callable[[Any], int]:
        """The classifier as a plain function returning an int, specialised to the rule count.

        Same results and error counting as calling the classifier; the scheduler calls it once
        per item, so the loop and the ``__call__`` dispatch are left out where they can be.
        """
        default = int(self.default)
        matchers = self._matchers
        if not matchers:
            return lambda item: default
        if len(matchers) > 1:
            call = self.__call__
            return lambda item: int(call(item))
        (match,) = matchers

        def classify_one(item: Any) -> int:
            try:
                priority = match(item)
            except Exception:  # noqa: BLE001 - as in __call__
                self._raised()
                return default
            return default if priority is None else int(priority)

        return classify_one

    def __repr__(self) -> str:
        return (
            f"PriorityClassifier(signal={self.signal.value!r}, rules={len(self.rules)}, "
            f"default={self.default.name.lower()}, errors={self.errors})"
        )


def compile_rules(
    rules: Sequence[RuleLike] | str | None,
    signal: str,
    *,
    default: PriorityClass = PriorityClass.NORMAL,
    include_defaults: bool = True,
) -> PriorityClassifier:
    """Compile user rules, then DEFAULT_RULES (if ``include_defaults``), then ``default``.

    ``signal`` is ``"traces"`` or ``"logs"``. String entries may hold several rules.
    """
    try:
        sig = Signal(signal)
    except ValueError:
        raise ValueError(f"signal must be 'traces' or 'logs', got {signal!r}") from None
    default = PriorityClass.parse(default)

    entries: list[Rule | RuleFunction] = []
    if rules is None:
        pass
    elif isinstance(rules, str):
        entries.extend(parse_rules(rules))
    elif isinstance(rules, Sequence) and not isinstance(rules, (bytes, bytearray, memoryview)):
        for i, entry in enumerate(rules):
            if isinstance(entry, Rule):
                entries.append(entry)
            elif isinstance(entry, str):
                entries.extend(parse_rules(entry))
            elif callable(entry):
                entries.append(entry)
            else:
                raise TypeError(
                    f"priority_rules[{i}] must be a Rule, a rule string or a callable(item) returning a "
                    f"priority class or None; got {entry!r} ({type(entry).__name__})"
                )
    else:
        # Sets and other unordered iterables are refused too: first match wins, so order matters.
        raise TypeError(
            "priority_rules must be a rule string, a list or tuple of rules (Rule, rule string or "
            f"callable) or None; got {rules!r} ({type(rules).__name__})"
        )
    if include_defaults:
        entries.extend(DEFAULT_RULES)

    effective: list[RuleLike] = []
    matchers: list[_Matcher] = []
    for entry in entries:
        if isinstance(entry, Rule):
            compiled = _compile_rule(entry, sig)
            if compiled is None:
                continue
            matcher, always = compiled
        else:
            matcher, always = _wrap_callable(entry), False
        effective.append(entry)
        matchers.append(matcher)
        if always:
            break  # nothing after it can be reached
    return PriorityClassifier(tuple(effective), tuple(matchers), default, sig)
