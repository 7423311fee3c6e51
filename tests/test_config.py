"""Configuration: stock-compatible arguments and env, our options, messages naming the value."""

from __future__ import annotations

import logging

import pytest

from otel_sched import ScheduledLogRecordProcessor, ScheduledSpanProcessor
from otel_sched._config import OPTIONS, resolve_config
from otel_sched.scheduling._task import PriorityClass, Signal


class _NullExporter:
    def export(self, batch: object) -> None:
        return None

    def shutdown(self) -> None:
        pass


def test_defaults_match_the_stock_processors() -> None:
    spans = resolve_config(Signal.TRACES)
    logs = resolve_config(Signal.LOGS)
    assert (spans.max_queue_size, spans.schedule_delay_millis, spans.max_export_batch_size) == (
        2048,
        5000,
        512,
    )
    assert spans.export_timeout_millis == 30000
    assert logs.schedule_delay_millis == 1000
    assert spans.policy == "priority_fair"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_queue_size": 0}, "max_queue_size must be a positive integer."),
        ({"schedule_delay_millis": -1}, "schedule_delay_millis must be positive."),
        ({"max_export_batch_size": 0}, "max_export_batch_size must be a positive integer."),
        (
            {"max_queue_size": 10, "max_export_batch_size": 20},
            "max_export_batch_size must be less than or equal to max_queue_size.",
        ),
    ],
)
def test_bad_stock_arguments_raise_the_sdk_messages(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError) as info:
        ScheduledSpanProcessor(_NullExporter(), **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragments"),
    [
        ({"policy": "lifo"}, ValueError, ["policy='lifo'", "fifo, priority, fair"]),
        ({"policy": 3}, TypeError, ["policy=3", "int"]),
        ({"max_queue_size": "many"}, ValueError, ["max_queue_size='many'", "integer"]),
        ({"max_queue_size": 2.5}, TypeError, ["max_queue_size=2.5", "integer"]),
        ({"tenant_weights": "acme=0"}, ValueError, ["tenant_weights='acme=0'", "positive weights"]),
        ({"tenant_weights": "acme"}, ValueError, ["tenant_weights='acme'"]),
        ({"max_age_millis": "urgent=5"}, ValueError, ["max_age_millis='urgent=5'"]),
        ({"max_queue_bytes": 10}, ValueError, ["max_queue_bytes=10", ">= 1024"]),
        ({"aging_millis": float("nan")}, ValueError, ["aging_millis=nan"]),
        ({"tenant_key": 5}, TypeError, ["tenant_key=5"]),
    ],
)
def test_bad_code_arguments_name_the_argument_value_and_expectation(
    kwargs: dict[str, object], exc: type[Exception], fragments: list[str]
) -> None:
    with pytest.raises(exc) as info:
        ScheduledSpanProcessor(_NullExporter(), **kwargs)  # type: ignore[arg-type]
    for fragment in fragments:
        assert fragment in str(info.value)


def test_exporter_that_is_not_an_exporter_is_refused() -> None:
    with pytest.raises(TypeError, match="span_exporter=42 is not an exporter"):
        ScheduledSpanProcessor(42)
    with pytest.raises(TypeError, match="exporter=None is not an exporter"):
        ScheduledLogRecordProcessor(None)


@pytest.mark.parametrize(
    ("env", "value", "option", "default"),
    [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "lots", "max_queue_size", 2048),
        ("OTEL_BSP_SCHEDULE_DELAY", "-5", "schedule_delay_millis", 5000),
        ("OTEL_PYTHON_SCHED_POLICY", "random", "policy", "priority_fair"),
        ("OTEL_PYTHON_SCHED_MAX_TENANTS", "0", "max_tenants", 1000),
        ("OTEL_PYTHON_SCHED_TENANT_WEIGHTS", "a=x", "tenant_weights", {}),
    ],
)
def test_bad_env_values_warn_naming_variable_and_value_and_use_the_default(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    env: str,
    value: str,
    option: str,
    default: object,
) -> None:
    monkeypatch.setenv(env, value)
    with caplog.at_level(logging.WARNING, logger="otel_sched._config"):
        config = resolve_config(Signal.TRACES)
    assert getattr(config, option) == default
    assert env in caplog.text and repr(value) in caplog.text


def test_env_is_used_and_code_overrides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4096")
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "250")
    monkeypatch.setenv("OTEL_PYTHON_SCHED_POLICY", "fair")
    monkeypatch.setenv("OTEL_PYTHON_SCHED_MAX_AGE_MILLIS", "high=500")
    config = resolve_config(Signal.TRACES)
    assert config.max_queue_size == 4096 and config.policy == "fair"
    assert config.max_age_millis[PriorityClass.HIGH] == 500
    assert config.max_age_millis[PriorityClass.LOW] == 30000
    assert config.sources["policy"] == "env"
    assert resolve_config(Signal.LOGS).schedule_delay_millis == 250
    assert resolve_config(Signal.TRACES, policy="fifo", max_queue_size=1000).max_queue_size == 1000


def test_conflicting_env_values_warn_and_clamp(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    with caplog.at_level(logging.WARNING):
        config = resolve_config(Signal.TRACES)
    assert config.max_export_batch_size == 100
    assert "max_export_batch_size=512" in caplog.text


def test_every_option_has_an_env_variable_and_a_doc() -> None:
    for option in OPTIONS:
        assert option.env, option.name
        assert option.doc, option.name
        if not option.stock:
            assert option.env.startswith("OTEL_PYTHON_SCHED_"), option.name


def test_unknown_options_are_refused() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        resolve_config(Signal.TRACES, colour="blue")


def test_malformed_priority_rules_from_code_raise_naming_the_rule() -> None:
    with pytest.raises(ValueError, match="rule 1"):
        ScheduledSpanProcessor(_NullExporter(), priority_rules="status == eror -> high")


def test_malformed_priority_rules_from_env_warn_and_keep_the_defaults(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SCHED_PRIORITY_RULES", "attr.x == 1 => high")
    with caplog.at_level(logging.WARNING, logger="otel_sched._config"):
        config = resolve_config(Signal.TRACES)
    assert config.priority_rules is None
    assert "OTEL_PYTHON_SCHED_PRIORITY_RULES" in caplog.text and "attr.x == 1 => high" in caplog.text


def test_priority_rules_from_env_take_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SCHED_PRIORITY_RULES", "attr.tier == gold -> high")
    config = resolve_config(Signal.TRACES)
    assert [r.priority for r in config.priority_rules] == [PriorityClass.HIGH]


def test_docs_configuration_table_matches_the_code() -> None:
    from pathlib import Path

    from otel_sched._config import options_table

    docs = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    hint = "regenerate: python -c 'from otel_sched._config import options_table as t; print(t())'"
    assert options_table() in docs, hint


@pytest.mark.parametrize(
    ("env", "bad"),
    [
        ("OTEL_PYTHON_SCHED_MAX_CONCURRENT_EXPORTS", "0"),
        ("OTEL_PYTHON_SCHED_ADAPTIVE_CONCURRENCY", "sometimes"),
        ("OTEL_PYTHON_SCHED_OTLP_FAST_PATH", "maybe"),
        ("OTEL_PYTHON_SCHED_NATIVE_ENCODER", "maybe"),
        ("OTEL_PYTHON_SCHED_ENDPOINTS", "collector:4318"),
        ("OTEL_PYTHON_SCHED_SPOOL_MAX_BYTES", "12"),
        ("OTEL_PYTHON_SCHED_SPOOL_MAX_AGE_MILLIS", "-1"),
        ("OTEL_PYTHON_SCHED_RESOURCE_AWARE", "2"),
        ("OTEL_PYTHON_SCHED_MEMORY_LIMIT_MIB", "lots"),
        ("OTEL_PYTHON_SCHED_SIGNAL_WEIGHTS", "traces"),
        ("OTEL_PYTHON_SCHED_CPU_CAP_CORES", "0"),
        ("OTEL_PYTHON_SCHED_SELF_TUNING", "yes please"),
        ("OTEL_PYTHON_SCHED_AGING_MILLIS", "soon"),
        ("OTEL_PYTHON_SCHED_FAIR_QUANTUM_BYTES", "-3"),
        ("OTEL_PYTHON_SCHED_MAX_RECURSION_DEPTH", "deep"),
        ("OTEL_PYTHON_SCHED_SHUTDOWN_TIMEOUT_MILLIS", "0"),
        ("OTEL_PYTHON_SCHED_EXIT_TIMEOUT_MILLIS", "-5"),
        ("OTEL_PYTHON_SCHED_FLUSH_ON_SIGTERM", "maybe"),
        ("OTEL_PYTHON_SCHED_MAX_QUEUE_BYTES", "1"),
        ("OTEL_PYTHON_SCHED_MAX_EXPORT_BATCH_BYTES", "x"),
    ],
)
def test_every_option_warns_on_a_bad_env_value_and_keeps_its_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, env: str, bad: str
) -> None:
    option = next(o for o in OPTIONS if o.env == env)
    monkeypatch.setenv(env, bad)
    with caplog.at_level(logging.WARNING, logger="otel_sched._config"):
        config = resolve_config(Signal.TRACES)
    assert getattr(config, option.name) == option.default_for(Signal.TRACES)
    assert env in caplog.text and repr(bad) in caplog.text
