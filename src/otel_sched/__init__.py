"""otel-sched: a scheduled export pipeline for the OpenTelemetry Python SDK.

``ScheduledSpanProcessor`` and ``ScheduledLogRecordProcessor`` replace the SDK's
``BatchSpanProcessor`` and ``BatchLogRecordProcessor``: every span and log record
becomes a task ranked by priority, tenant fairness and predicted export cost.
"""

from ._adopt import Replacement, adopt, patch_batch_processors, unpatch_batch_processors
from ._processors import ScheduledLogRecordProcessor, ScheduledSpanProcessor
from ._selflog import install as _install_stderr_fallback
from ._setup import Setup, configure
from .runtime._pipeline import stats
from .scheduling._boost import mark_trace_important, unmark_trace
from .scheduling._priority_rules import PriorityClassifier
from .scheduling._rule_syntax import Rule, RuleSyntaxError, parse_rules
from .scheduling._task import PriorityClass

_install_stderr_fallback()

__version__ = "0.1.0"

__all__ = [
    "PriorityClass",
    "PriorityClassifier",
    "Replacement",
    "Rule",
    "RuleSyntaxError",
    "ScheduledLogRecordProcessor",
    "ScheduledSpanProcessor",
    "Setup",
    "__version__",
    "adopt",
    "configure",
    "mark_trace_important",
    "parse_rules",
    "patch_batch_processors",
    "stats",
    "unmark_trace",
    "unpatch_batch_processors",
]
