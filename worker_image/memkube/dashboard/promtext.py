"""A minimal writer for the Prometheus text exposition format (version 0.0.4).

Just enough to render gauges and counters with labels: ``# HELP`` and ``# TYPE`` lines,
escaped label values and help text, and Prometheus' spelling of special floats. Written by
hand so that the runtime image needs no ``prometheus_client``; the tests parse the output
with ``prometheus_client.parser`` to hold it to the format.

Not covered: histograms, summaries, exemplars, timestamps, OpenMetrics.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

MetricType = Literal["gauge", "counter"]

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass
class Family:
    """One metric family: a name, its type and help, and its labelled samples."""

    name: str
    type: MetricType
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")
        # Prometheus convention: a counter's name ends in _total, a gauge's never does.
        if (self.type == "counter") != self.name.endswith("_total"):
            raise ValueError(f"{self.type} {self.name!r} breaks the _total naming rule")

    def add(self, value: float, **labels: str) -> None:
        for label in labels:
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r}")
        self.samples.append((labels, float(value)))


def render(families: list[Family]) -> str:
    """The exposition text for ``families``, in order, ending with a newline."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in family.samples:
            lines.append(f"{family.name}{_labels(labels)} {format_value(value)}")
    return "\n".join(lines) + "\n"


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: integers without a fraction, ``NaN``, ``+Inf``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**63:
        return str(int(value))
    return repr(value)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
