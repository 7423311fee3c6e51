"""Tests for the priority rule language: parsing, formatting, errors and evaluation."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_sched.scheduling._priority_rules import PriorityClassifier, compile_rules
from otel_sched.scheduling._rule_syntax import (
    DEFAULT_RULES,
    Condition,
    Rule,
    RuleSyntaxError,
    format_rules,
    parse_rules,
)
from otel_sched.scheduling._task import PriorityClass, Signal

LOW, NORMAL, HIGH = PriorityClass.LOW, PriorityClass.NORMAL, PriorityClass.HIGH


def C(field: str, op: str = "*", *values: str) -> Condition:
    return Condition(field, op, tuple(values))


def R(priority: PriorityClass, *conditions: Condition) -> Rule:
    return Rule(conditions, priority)


# --- real telemetry --------------------------------------------------------------------------


def make_span(
    name: str = "op",
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    status: StatusCode | None = None,
    attributes: Mapping[str, Any] | None = None,
    scope: str = "tests",
    resource: Mapping[str, Any] | None = None,
) -> ReadableSpan:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(dict(resource or {})))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer(scope).start_as_current_span(
        name,
        kind=kind,
        attributes=dict(attributes or {}),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        if status is not None:
            span.set_status(Status(status))
    provider.shutdown()
    (finished,) = exporter.get_finished_spans()
    return finished


def make_log(
    *,
    severity: SeverityNumber | None = None,
    event_name: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    scope: str = "tests",
    resource: Mapping[str, Any] | None = None,
) -> ReadableLogRecord:
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(resource=Resource.create(dict(resource or {})))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger(scope).emit(
        severity_number=severity, body="hello", attributes=dict(attributes or {}), event_name=event_name
    )
    provider.shutdown()
    (finished,) = exporter.get_finished_logs()
    return finished


# --- parsing ---------------------------------------------------------------------------------

GOOD_RULES: list[tuple[str, list[Rule]]] = [
    ("status == error -> high", [R(HIGH, C("status", "==", "error"))]),
    ("status==ERROR->High", [R(HIGH, C("status", "==", "error"))]),
    ("* -> low", [R(LOW, C("*"))]),
    ("kind in (server, CLIENT) -> normal", [R(NORMAL, C("kind", "in", "server", "client"))]),
    ("kind not in (internal) -> low", [R(LOW, C("kind", "not in", "internal"))]),
    ("kind NOT   IN (internal) -> low", [R(LOW, C("kind", "not in", "internal"))]),
    ("name != GET -> low", [R(LOW, C("name", "!=", "GET"))]),
    ("severity >= WARN -> high", [R(HIGH, C("severity", ">=", "warn"))]),
    ("severity < 017 -> low", [R(LOW, C("severity", "<", "17"))]),
    (
        "scope == opentelemetry.instrumentation.* -> low",
        [R(LOW, C("scope", "==", "opentelemetry.instrumentation.*"))],
    ),
    ("event_name exists -> high", [R(HIGH, C("event_name", "exists"))]),
    ("attr.http.route exists -> high", [R(HIGH, C("attr.http.route", "exists"))]),
    ("attr.http.status_code >= 500 -> high", [R(HIGH, C("attr.http.status_code", ">=", "500"))]),
    ("attr.latency < -1.5e3 -> low", [R(LOW, C("attr.latency", "<", "-1.5e3"))]),
    (
        'resource.service.name in ("billing api", checkout, "a\\"b\\\\c") -> high',
        [R(HIGH, C("resource.service.name", "in", "billing api", "checkout", 'a"b\\c'))],
    ),
    (
        'attr.http.route == "/a;b#c" & kind == server -> low  # comment; not a rule',
        [R(LOW, C("attr.http.route", "==", "/a;b#c"), C("kind", "==", "server"))],
    ),
    ("attr.x == a-b -> low", [R(LOW, C("attr.x", "==", "a-b"))]),
    ("attr.x == a->low", [R(LOW, C("attr.x", "==", "a"))]),  # a bare word stops before "->"
    ('attr.x == "" -> low', [R(LOW, C("attr.x", "==", ""))]),
    (
        "status == error -> high; severity >= error -> high",
        [R(HIGH, C("status", "==", "error")), R(HIGH, C("severity", ">=", "error"))],
    ),
    (
        "\n  # header comment\n\nname == a -> low ;; \n\tname == b -> high\n",
        [R(LOW, C("name", "==", "a")), R(HIGH, C("name", "==", "b"))],
    ),
    ("", []),
    ("  ; # nothing here", []),
    (
        "* & attr.a exists & attr.b != x & resource.r in (1) -> normal",
        [R(NORMAL, C("*"), C("attr.a", "exists"), C("attr.b", "!=", "x"), C("resource.r", "in", "1"))],
    ),
]


@pytest.mark.parametrize(("text", "expected"), GOOD_RULES)
def test_parse_good_rules(text: str, expected: list[Rule]) -> None:
    assert parse_rules(text) == expected


@pytest.mark.parametrize("text", [g[0] for g in GOOD_RULES])
def test_format_round_trips(text: str) -> None:
    rules = parse_rules(text)
    formatted = format_rules(rules)
    assert parse_rules(formatted) == rules
    assert format_rules(parse_rules(formatted)) == formatted


def test_format_rules_canonical_text() -> None:
    rules = parse_rules('kind IN (Server,client)&attr.r=="/a b"->HIGH\nseverity>=ERROR->low')
    assert (
        format_rules(rules) == 'kind in (server, client) & attr.r == "/a b" -> high; severity >= error -> low'
    )
    assert str(rules[0].conditions[1]) == 'attr.r == "/a b"'


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        ("a b", '"a b"'),
        ("a->b", '"a->b"'),
        ("x#y", '"x#y"'),
        ('q"', '"q\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("(x)", '"(x)"'),
        ("a,b", '"a,b"'),
        ("", '""'),
    ],
)
def test_format_quotes_only_when_needed(value: str, written: str) -> None:
    rule = R(LOW, C("name", "==", value))
    assert format_rules([rule]) == f"name == {written} -> low"
    assert parse_rules(format_rules([rule])) == [rule]


def test_format_refuses_what_the_syntax_cannot_express() -> None:
    with pytest.raises(ValueError, match="newline"):
        format_rules([R(LOW, C("name", "==", "a\nb"))])
    with pytest.raises(ValueError, match="cannot be written"):
        format_rules([R(LOW, C("attr.a b", "exists"))])
    with pytest.raises(TypeError):
        format_rules(["name == a -> low"])  # type: ignore[list-item]


def test_rule_parse_takes_exactly_one_rule() -> None:
    assert Rule.parse("name == a -> low  # why") == R(LOW, C("name", "==", "a"))
    with pytest.raises(RuleSyntaxError, match="exactly one rule, found 2"):
        Rule.parse("name == a -> low; name == b -> high")
    with pytest.raises(RuleSyntaxError, match="exactly one rule, found 0"):
        Rule.parse("  # nothing")


def test_condition_and_rule_validate_and_normalise() -> None:
    assert C("status", "==", "ERROR").values == ("error",)
    assert C("severity", "in", "Fatal", "08").values == ("fatal", "8")
    assert Rule([C("*")], "high") == R(HIGH, C("*"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown status"):
        C("status", "==", "broken")
    with pytest.raises(ValueError, match="not a number"):
        C("attr.x", ">", "many")
    with pytest.raises(ValueError, match="single value"):
        C("name", "==", "a", "b")
    with pytest.raises(ValueError, match="at least one condition"):
        Rule((), HIGH)
    with pytest.raises(ValueError, match="priority class"):
        Rule((C("*"),), "urgent")  # type: ignore[arg-type]


def test_default_rules() -> None:
    assert tuple(parse_rules("status == error -> high; severity >= error -> high")) == DEFAULT_RULES


# (text, rule index, offending token, fragment of the message)
SYNTAX_ERRORS: list[tuple[str, int, str, str]] = [
    ('name == "unterminated -> high', 1, '"unterminated -> high', "unterminated quoted string"),
    ('* -> low\nname == "a;b -> high', 2, '"a;b -> high', "unterminated quoted string"),
    ("status == error high", 1, "high", "expected '&' or '->'"),
    ("status == error", 1, "end of rule", "expected '&' or '->'"),
    ("* -> low; status == error -> urgent", 2, "urgent", "unknown priority class"),
    ("status == error ->", 1, "end of rule", "missing priority class"),
    ("name == a -> high x", 1, "x", "unexpected text after the priority class"),
    ("foo == bar -> high", 1, "foo", "unknown field 'foo'"),
    ("STATUS == error -> high", 1, "STATUS", "unknown field"),
    ("attr. exists -> high", 1, "attr.", "has no attribute key"),
    ("status == broken -> high", 1, "broken", "unknown status 'broken'"),
    ("kind in (server, serverless) -> high", 1, "serverless", "unknown kind 'serverless'"),
    ("severity >= loud -> high", 1, "loud", "unknown severity 'loud'"),
    ("severity == 25 -> high", 1, "25", "unknown severity"),
    ("status >= error -> high", 1, ">=", "ordering operator '>=' is not supported for field 'status'"),
    ("kind < server -> high", 1, "<", "ordering operator '<'"),
    ("scope > a -> high", 1, ">", "ordering operator"),
    ("attr.x in a -> high", 1, "a", "'in' needs a parenthesised list"),
    ("attr.x not in a -> high", 1, "a", "'not in' needs a parenthesised list"),
    ("attr.x in () -> high", 1, ")", "empty value list"),
    ("attr.x in (a, ) -> high", 1, ")", "expected a value"),
    ("attr.x in (a b) -> high", 1, "b", "unfinished value list"),
    ("attr.x == (a, b) -> high", 1, "(", "list of values is not allowed"),
    ("attr.http.status_code >= abc -> high", 1, "abc", "'abc' is not a number"),
    ("* -> low\n\n# c\nattr.x < (1) -> low", 2, "(", "list of values is not allowed"),
    ("status = error -> high", 1, "=", "expected an operator"),
    ("attr.x is a -> high", 1, "is", "expected an operator"),
    ("attr.x not a -> high", 1, "not", "expected an operator"),
    ("name == -> high", 1, "->", "expected a value"),
    ("& name == a -> high", 1, "&", "expected a condition"),
    ('name == "a\\n" -> high', 1, "\\n", "unknown escape"),
]


@pytest.mark.parametrize(("text", "index", "token", "problem"), SYNTAX_ERRORS)
def test_syntax_errors(text: str, index: int, token: str, problem: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse_rules(text)
    error = info.value
    message = str(error)
    assert problem in message
    assert f"priority rule {index} " in message
    assert error.index == index
    assert error.rule in text
    assert repr(error.rule) in message
    assert "expected" in message
    if token == "end of rule":
        assert "at end of rule" in message
    else:
        assert error.token.startswith(token)
        assert f"at {error.token!r}" in message
        assert error.rule[error.column - 1 :].startswith(token)


def test_syntax_error_is_a_value_error_and_pickles() -> None:
    with pytest.raises(ValueError, match="unknown field"):
        parse_rules("bogus exists -> low")
    try:
        parse_rules("bogus exists -> low")
    except RuleSyntaxError as exc:
        copy = pickle.loads(pickle.dumps(exc))
        assert str(copy) == str(exc)
        assert (copy.index, copy.column, copy.token) == (exc.index, exc.column, exc.token)


# --- evaluation on spans ---------------------------------------------------------------------

SPAN_CASES: list[tuple[str, dict[str, Any], PriorityClass]] = [
    ("", {"status": StatusCode.ERROR}, HIGH),
    ("", {"status": StatusCode.OK}, NORMAL),
    ("", {}, NORMAL),
    ("status == ok -> low", {"status": StatusCode.OK}, LOW),
    ("status != error -> low", {"status": StatusCode.ERROR}, HIGH),
    ("status in (ok, unset) -> low", {}, LOW),
    ("kind == server -> low", {"kind": SpanKind.SERVER}, LOW),
    ("kind == server -> low", {"kind": SpanKind.CLIENT}, NORMAL),
    ("kind not in (server, client) -> low", {"kind": SpanKind.CONSUMER}, LOW),
    ("kind exists -> low", {}, LOW),
    ("name == GET -> high", {"name": "GET"}, HIGH),
    ("name == GET -> high", {"name": "get"}, NORMAL),
    ("name in (a, b) -> high", {"name": "b"}, HIGH),
    ("name != health -> high", {"name": "health"}, NORMAL),
    (
        "scope == opentelemetry.instrumentation.* -> low",
        {"scope": "opentelemetry.instrumentation.flask"},
        LOW,
    ),
    ("scope == opentelemetry.instrumentation.* -> low", {"scope": "myapp"}, NORMAL),
    ('scope == "opentelemetry.*" -> low', {"scope": "opentelemetry.x"}, LOW),
    ("scope != opentelemetry.* -> low", {"scope": "myapp"}, LOW),
    ("scope != opentelemetry.* -> low", {"scope": "opentelemetry.x"}, NORMAL),
    ("scope in (myapp, lib.*) -> low", {"scope": "lib.db"}, LOW),
    ("scope in (myapp, lib.*) -> low", {"scope": "myapp"}, LOW),
    ("scope not in (myapp, lib.*) -> low", {"scope": "other"}, LOW),
    ("scope == * -> low", {"scope": "anything"}, LOW),
    ("scope == myapp -> low", {"scope": "myapp.sub"}, NORMAL),
    ("attr.http.route == /health -> low", {"attributes": {"http.route": "/health"}}, LOW),
    ("attr.http.route in (/a, /b) -> low", {"attributes": {"http.route": "/b"}}, LOW),
    ("attr.http.status_code == 500 -> high", {"attributes": {"http.status_code": 500}}, HIGH),
    ("attr.http.status_code == 500 -> high", {"attributes": {"http.status_code": "500"}}, HIGH),
    ("attr.http.status_code == 500 -> high", {"attributes": {"http.status_code": 500.0}}, NORMAL),
    ("attr.flag == true -> high", {"attributes": {"flag": True}}, HIGH),
    ("attr.flag == True -> high", {"attributes": {"flag": True}}, NORMAL),
    ("attr.flag != true -> high", {"attributes": {"flag": False}}, HIGH),
    ("attr.code >= 500 -> high", {"attributes": {"code": 503}}, HIGH),
    ("attr.code >= 500 -> high", {"attributes": {"code": 500}}, HIGH),
    ("attr.code > 500 -> high", {"attributes": {"code": 500}}, NORMAL),
    ("attr.code >= 500 -> high", {"attributes": {"code": "503"}}, HIGH),
    ("attr.code >= 500 -> high", {"attributes": {"code": " 5e2 "}}, HIGH),
    ("attr.code < 500 -> low", {"attributes": {"code": 499.5}}, LOW),
    ("attr.code <= 1.5 -> low", {"attributes": {"code": 2}}, NORMAL),
    ("attr.code >= 500 -> high", {"attributes": {"code": "lots"}}, NORMAL),
    ("attr.code >= 0 -> high", {"attributes": {"code": True}}, NORMAL),
    ("attr.code >= 0 -> high", {"attributes": {"code": [1, 2]}}, NORMAL),
    ("attr.code exists -> low", {"attributes": {"code": 0}}, LOW),
    # A missing attribute never matches, whatever the operator.
    ("attr.missing exists -> low", {"attributes": {"other": 1}}, NORMAL),
    ("attr.missing == a -> low", {}, NORMAL),
    ("attr.missing != a -> low", {}, NORMAL),
    ("attr.missing in (a) -> low", {}, NORMAL),
    ("attr.missing not in (a) -> low", {}, NORMAL),
    ("attr.missing >= 1 -> low", {}, NORMAL),
    ("attr.missing < 1 -> low", {}, NORMAL),
    (
        "resource.deployment.environment == prod -> high",
        {"resource": {"deployment.environment": "prod"}},
        HIGH,
    ),
    (
        "resource.deployment.environment == prod -> high",
        {"resource": {"deployment.environment": "dev"}},
        NORMAL,
    ),
    ("resource.tier >= 2 -> high", {"resource": {"tier": 3}}, HIGH),
    ("resource.service.name exists -> low", {}, LOW),  # Resource.create always sets service.name
    ("resource.nope != x -> low", {}, NORMAL),
    ("kind == server & attr.http.route == /health -> low", {"kind": SpanKind.SERVER}, NORMAL),
    (
        "kind == server & attr.http.route == /health -> low",
        {"kind": SpanKind.SERVER, "attributes": {"http.route": "/health"}},
        LOW,
    ),
    (
        "kind == server & name == x & attr.a >= 1 & resource.r == y -> low",
        {"kind": SpanKind.SERVER, "name": "x", "attributes": {"a": 2}, "resource": {"r": "y"}},
        LOW,
    ),
    ("kind == server & name == x & attr.a >= 1 -> low", {"kind": SpanKind.SERVER, "name": "x"}, NORMAL),
    # First match wins, and user rules come before the defaults.
    ("name == a -> low; name == a -> high", {"name": "a"}, LOW),
    ("name == a -> high; * -> low", {"name": "a"}, HIGH),
    ("* -> low", {"status": StatusCode.ERROR}, LOW),
    ("status == error -> low", {"status": StatusCode.ERROR}, LOW),
    # Log-only fields never hold for spans.
    ("severity >= trace -> low", {}, NORMAL),
    ("event_name exists -> low", {}, NORMAL),
    ("severity < trace -> low", {}, NORMAL),
]


@pytest.mark.parametrize(("rules", "span_args", "expected"), SPAN_CASES)
def test_span_evaluation(rules: str, span_args: dict[str, Any], expected: PriorityClass) -> None:
    classifier = compile_rules(rules, "traces")
    span = make_span(**span_args)
    assert classifier(span) is expected
    assert classifier.function()(span) == int(expected)  # what the scheduler calls
    assert classifier.errors == 0


def test_span_without_scope_or_resource() -> None:
    span = make_span(scope="lib", attributes={"a": 1})
    bare = ReadableSpan(name="x", attributes=None, resource=None, instrumentation_scope=None)
    classifier = compile_rules(
        "scope == lib -> low; scope != lib -> low; resource.a exists -> low; attr.a exists -> high",
        "traces",
        include_defaults=False,
    )
    assert classifier(span) is LOW
    assert classifier(bare) is NORMAL
    assert classifier.errors == 0


# --- evaluation on log records ---------------------------------------------------------------

LOG_CASES: list[tuple[str, dict[str, Any], PriorityClass]] = [
    ("", {"severity": SeverityNumber.ERROR}, HIGH),
    ("", {"severity": SeverityNumber.ERROR4}, HIGH),
    ("", {"severity": SeverityNumber.FATAL}, HIGH),
    ("", {"severity": SeverityNumber.WARN}, NORMAL),
    ("", {"severity": SeverityNumber.WARN4}, NORMAL),
    ("", {}, NORMAL),
    ("severity >= warn -> high", {"severity": SeverityNumber.WARN}, HIGH),
    ("severity >= warn -> high", {"severity": SeverityNumber.INFO4}, NORMAL),
    ("severity < info -> low", {"severity": SeverityNumber.DEBUG}, LOW),
    ("severity < info -> low", {}, LOW),  # no severity number is severity 0
    ("severity <= info -> low", {"severity": SeverityNumber.INFO4}, LOW),
    ("severity > info -> high", {"severity": SeverityNumber.INFO4}, NORMAL),
    ("severity > info -> high", {"severity": SeverityNumber.WARN}, HIGH),
    ("severity == error -> low", {"severity": SeverityNumber.ERROR3}, LOW),
    ("severity == error -> low", {"severity": SeverityNumber.FATAL}, HIGH),
    ("severity != debug -> low", {"severity": SeverityNumber.DEBUG2}, NORMAL),
    ("severity != debug -> low", {}, LOW),
    ("severity in (trace, debug) -> low", {"severity": SeverityNumber.TRACE4}, LOW),
    ("severity not in (trace, debug) -> low", {"severity": SeverityNumber.INFO}, LOW),
    ("severity == 18 -> low", {"severity": SeverityNumber.ERROR2}, LOW),
    ("severity == 18 -> low", {"severity": SeverityNumber.ERROR}, HIGH),
    ("severity >= 10 -> high", {"severity": SeverityNumber.INFO2}, HIGH),
    ("severity exists -> low", {"severity": SeverityNumber.INFO}, LOW),
    ("severity exists -> low", {}, NORMAL),
    ("event_name == user.login -> high", {"event_name": "user.login"}, HIGH),
    ("event_name == user.login -> high", {"event_name": "user.logout"}, NORMAL),
    ("event_name in (a, b) -> high", {"event_name": "b"}, HIGH),
    ("event_name exists -> high", {"event_name": "x"}, HIGH),
    ("event_name exists -> high", {}, NORMAL),
    ("event_name != a -> high", {}, NORMAL),
    ("attr.user.id == 42 -> high", {"attributes": {"user.id": 42}}, HIGH),
    ("attr.retry >= 3 -> low", {"attributes": {"retry": 5}}, LOW),
    ("attr.retry >= 3 -> low", {"attributes": {"retry": "x"}}, NORMAL),
    ("attr.missing not in (a) -> low", {"attributes": {}}, NORMAL),
    (
        "resource.env == prod & severity >= warn -> high",
        {"resource": {"env": "prod"}, "severity": SeverityNumber.WARN},
        HIGH,
    ),
    ("scope == myapp.* -> low", {"scope": "myapp.jobs"}, LOW),
    ("severity >= error -> low", {"severity": SeverityNumber.FATAL}, LOW),  # user rules before defaults
    # Span-only fields never hold for logs.
    ("status == unset -> low", {}, NORMAL),
    ("kind exists -> low", {}, NORMAL),
    ("name exists -> low", {"event_name": "x"}, NORMAL),
    ("name != x -> low", {}, NORMAL),
]


@pytest.mark.parametrize(("rules", "log_args", "expected"), LOG_CASES)
def test_log_evaluation(rules: str, log_args: dict[str, Any], expected: PriorityClass) -> None:
    classifier = compile_rules(rules, "logs")
    log = make_log(**log_args)
    assert classifier(log) is expected
    assert classifier.errors == 0


def test_log_without_attributes_scope_or_resource() -> None:
    log = make_log(attributes={"a": 1}, scope="lib")
    bare = ReadableLogRecord(
        log_record=LogRecord(body="hello", attributes=None),
        resource=None,  # type: ignore[arg-type]
        instrumentation_scope=None,
    )
    classifier = compile_rules(
        "attr.a exists -> high; attr.a != 2 -> high; scope == lib -> low; "
        "resource.service.name exists -> low",
        "logs",
    )
    assert classifier(log) is HIGH
    assert classifier(bare) is NORMAL
    assert classifier.errors == 0


def test_plain_dict_and_duck_typed_items() -> None:
    traces = compile_rules("attr.a == 1 -> low; resource.r exists -> high", "traces", include_defaults=False)
    logs = compile_rules("attr.a == 1 -> low; resource.r exists -> high", "logs", include_defaults=False)
    with_dict = ReadableSpan(name="x", attributes={"a": 1})
    duck_span = SimpleNamespace(attributes={"a": "1"}, resource=None)
    duck_resource = SimpleNamespace(attributes=None, resource=SimpleNamespace(attributes={"r": "y"}))
    duck_log = SimpleNamespace(log_record=SimpleNamespace(attributes={"a": 1}), resource=None)
    assert traces(with_dict) is LOW
    assert traces(duck_span) is LOW
    assert traces(duck_resource) is HIGH
    assert logs(duck_log) is LOW
    assert traces.errors == logs.errors == 0


# --- callables -------------------------------------------------------------------------------


def test_callable_rules_receive_the_item_and_may_defer() -> None:
    seen: list[Any] = []

    def defer(item: Any) -> None:
        seen.append(item)

    classifier = compile_rules([defer, "status == error -> low"], "traces")
    span = make_span(status=StatusCode.ERROR)
    assert classifier(span) is LOW
    assert seen == [span]
    assert classifier(make_span()) is NORMAL


@pytest.mark.parametrize("result", ["high", "HIGH", 2, PriorityClass.HIGH])
def test_callable_results(result: Any) -> None:
    classifier = compile_rules([lambda item: result], "logs")
    assert classifier(make_log()) is HIGH
    assert classifier.errors == 0


def test_raising_callable_is_counted_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    def broken(item: Any) -> PriorityClass:
        raise RuntimeError("boom")

    classifier = compile_rules([broken, "name == a -> low"], "traces")
    assert classifier(make_span("a")) is LOW
    assert classifier(make_span("b", status=StatusCode.ERROR)) is HIGH
    assert classifier.errors == 2
    assert sum("priority rule raised" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("result", ["urgent", 7, -1, True, 1.5, object()])
def test_bad_callable_results_are_counted(result: Any) -> None:
    classifier = compile_rules([lambda item: result], "traces", default=LOW)
    assert classifier(make_span()) is LOW
    assert classifier(make_span(status=StatusCode.ERROR)) is HIGH
    assert classifier.errors == 2


@pytest.mark.parametrize("rules", [[], ["status == error -> high"], ["name == a -> low", "* -> high"]])
def test_the_function_form_counts_errors_as_the_classifier_does(rules: list[Any]) -> None:
    def broken(item: Any) -> PriorityClass:
        raise RuntimeError("boom")

    classifier = compile_rules([broken, *rules], "traces", include_defaults=False, default=LOW)
    function = classifier.function()
    for item in (make_span("a"), make_span("b", status=StatusCode.ERROR), None):
        before = classifier.errors
        got = function(item)
        by_function = classifier.errors - before
        assert got == int(classifier(item))
        assert classifier.errors - before == 2 * by_function >= 2  # the broken rule at least, alike
    duck = SimpleNamespace(status=SimpleNamespace(status_code=StatusCode.ERROR), name="x")
    assert compile_rules(None, "traces").function()(duck) == int(HIGH)  # not a ReadableSpan: properties


def test_evaluation_never_raises_on_odd_items() -> None:
    classifier = compile_rules("attr.a == 1 -> low; kind == server -> low; name == x -> low", "traces")
    for item in (None, object(), 42, "span"):
        assert classifier(item) is NORMAL
    assert classifier.errors > 0


# --- compilation -----------------------------------------------------------------------------


def test_rules_that_cannot_match_the_signal_are_dropped() -> None:
    rules = "kind == server -> low; severity >= warn -> high; attr.a exists -> low"
    traces = compile_rules(rules, "traces")
    logs = compile_rules(rules, "logs")
    assert [format_rules([r]) for r in traces.rules if isinstance(r, Rule)] == [
        "kind == server -> low",
        "attr.a exists -> low",
        "status == error -> high",
    ]
    assert [format_rules([r]) for r in logs.rules if isinstance(r, Rule)] == [
        "severity >= warn -> high",
        "attr.a exists -> low",
        "severity >= error -> high",
    ]


def test_rules_after_an_always_matching_rule_are_dropped() -> None:
    classifier = compile_rules("name == a -> high; * -> low; name == b -> high", "traces")
    assert classifier.rules == tuple(parse_rules("name == a -> high; * -> low"))
    assert classifier(make_span("b", status=StatusCode.ERROR)) is LOW


def test_include_defaults_and_default() -> None:
    error_span = make_span(status=StatusCode.ERROR)
    assert compile_rules(None, "traces", include_defaults=False)(error_span) is NORMAL
    assert compile_rules(None, "traces", include_defaults=False).rules == ()
    assert compile_rules(None, "traces", default=LOW)(make_span()) is LOW
    assert compile_rules(None, "traces", default=LOW)(error_span) is HIGH
    assert compile_rules([], "logs", include_defaults=False, default=HIGH)(make_log()) is HIGH


def test_mixed_entries_in_order() -> None:
    def pick(item: Any) -> str | None:
        return "low" if item.name == "c" else None

    rule = Rule.parse("name == a -> low")
    classifier = compile_rules([rule, "name == b -> low\nname == d -> high", pick], Signal.TRACES)
    assert isinstance(classifier, PriorityClassifier)
    assert classifier.rules[:4] == (rule, *parse_rules("name == b -> low; name == d -> high"), pick)
    for name, expected in [("a", LOW), ("b", LOW), ("c", LOW), ("d", HIGH), ("e", NORMAL)]:
        assert classifier(make_span(name)) is expected


@pytest.mark.parametrize(
    "rules", [42, b"name == a -> low", {"name == a -> low"}, Rule.parse("* -> low"), 1.0]
)
def test_bad_rules_argument_type(rules: Any) -> None:
    with pytest.raises(TypeError) as info:
        compile_rules(rules, "traces")
    message = str(info.value)
    assert "priority_rules" in message
    assert repr(rules) in message
    assert "rule string" in message


@pytest.mark.parametrize("entry", [42, None, b"x", ("name == a -> low",)])
def test_bad_rule_entry_type(entry: Any) -> None:
    with pytest.raises(TypeError) as info:
        compile_rules(["* -> low", entry], "traces")
    message = str(info.value)
    assert "priority_rules[1]" in message
    assert repr(entry) in message
    assert "callable" in message


def test_syntax_errors_surface_from_compile_rules() -> None:
    with pytest.raises(RuleSyntaxError, match="unknown kind"):
        compile_rules(["kind == sever -> low"], "traces")


def test_bad_signal() -> None:
    with pytest.raises(ValueError, match="'traces' or 'logs'"):
        compile_rules(None, "metrics")


# --- round-trip property ---------------------------------------------------------------------

_keys = st.from_regex(r"[a-z][a-z0-9_.\-/]{0,12}", fullmatch=True)
_text = st.text(st.characters(exclude_characters="\n"), max_size=10)
_numbers = st.one_of(
    st.integers(-(10**9), 10**9).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
_eq_ops = st.sampled_from(["==", "!=", "in", "not in"])
_order_ops = st.sampled_from([">=", ">", "<=", "<"])
_mixed_case = st.sampled_from([str.lower, str.upper, str.title])


def _cond(fields: st.SearchStrategy[str], ops: st.SearchStrategy[str], values: st.SearchStrategy[str]) -> Any:
    @st.composite
    def build(draw: st.DrawFn) -> Condition:
        field, op = draw(fields), draw(ops)
        size = draw(st.integers(1, 3)) if op in ("in", "not in") else 1
        return Condition(field, op, tuple(draw(values) for _ in range(size)))

    return build()


_any_field = st.one_of(
    st.sampled_from(["status", "kind", "name", "severity", "scope", "event_name"]),
    _keys.map(lambda k: "attr." + k),
    _keys.map(lambda k: "resource." + k),
)
_severity_values = st.one_of(
    st.builds(
        lambda name, case: case(name),
        st.sampled_from(["trace", "debug", "info", "warn", "error", "fatal"]),
        _mixed_case,
    ),
    st.integers(1, 24).map(str),
)
_conditions = st.one_of(
    st.just(Condition("*", "*", ())),
    _any_field.map(lambda f: Condition(f, "exists", ())),
    _cond(
        st.just("status"),
        _eq_ops,
        st.builds(lambda v, c: c(v), st.sampled_from(["unset", "ok", "error"]), _mixed_case),
    ),
    _cond(
        st.just("kind"), _eq_ops, st.sampled_from(["internal", "server", "client", "producer", "consumer"])
    ),
    _cond(st.just("severity"), st.one_of(_eq_ops, _order_ops), _severity_values),
    _cond(st.sampled_from(["name", "event_name"]), _eq_ops, _text),
    _cond(st.just("scope"), _eq_ops, st.one_of(_text, _text.map(lambda t: t + "*"))),
    _cond(st.one_of(_keys.map(lambda k: "attr." + k), _keys.map(lambda k: "resource." + k)), _eq_ops, _text),
    _cond(
        st.one_of(_keys.map(lambda k: "attr." + k), _keys.map(lambda k: "resource." + k)),
        _order_ops,
        _numbers,
    ),
)
_rules = st.builds(
    lambda conditions, priority: Rule(tuple(conditions), priority),
    st.lists(_conditions, min_size=1, max_size=4),
    st.sampled_from(list(PriorityClass)),
)


@given(st.lists(_rules, max_size=5))
def test_format_parse_round_trip_property(rules: list[Rule]) -> None:
    text = format_rules(rules)
    parsed = parse_rules(text)
    assert parsed == rules
    assert format_rules(parsed) == text
    # Every rule also compiles for both signals without error.
    for signal in ("traces", "logs"):
        compile_rules(parsed, signal)


_rule_pieces = st.sampled_from(
    [
        *'*&-><=!(),;#" \\\nx0',
        *("status", "kind", "severity", "scope", "attr.a", "error", "server"),
        *(" == ", " in ", " not in ", " >= ", " exists", " -> high"),
    ]
)


@given(st.lists(_rule_pieces, max_size=25).map("".join))
def test_parse_raises_only_rule_syntax_errors(text: str) -> None:
    try:
        rules = parse_rules(text)
    except RuleSyntaxError as exc:
        assert exc.index >= 1
        assert 1 <= exc.column <= len(exc.rule) + 1
        return
    assert parse_rules(format_rules(rules)) == rules
