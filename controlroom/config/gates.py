"""A gate as the config writes it: ``errors_5xx < 5``, a series, an operator and a threshold.

The grammar lives here once: the config reads a phase's gates with ``Gate.parse`` (and says where one cannot be
read), the engine judges them (engine/gates.py). Clients never parse a gate: the engine's verdicts
(events.GateVerdict) carry the series, the operator and the threshold already.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

_GATE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>|==|!=)\s*(-?\d+(?:\.\d+)?)\s*$")
OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
             "!=": operator.ne}
HOW_TO_WRITE = "write it as 'SERIES < NUMBER' (<, <=, >, >=, ==, !=)"


@dataclass(frozen=True)
class Gate:
    """One gate: ``series op threshold``, and the text it was written as (what the log and the config name)."""

    series: str
    op: str  # one of OPERATORS
    threshold: float
    text: str  # as written: "errors_5xx < 5"
    number: str = ""  # the threshold as written: "5", "0.99"

    @classmethod
    def parse(cls, text: str) -> Gate:
        """The gate ``text`` says; ValueError when it is not one."""
        m = _GATE.match(text) if isinstance(text, str) else None
        if not m:
            raise ValueError(f"cannot read gate {text!r}: {HOW_TO_WRITE}")
        return cls(m.group(1), m.group(2), float(m.group(3)), text, m.group(3))

    @classmethod
    def read(cls, text: str) -> Gate | None:
        """The gate ``text`` says, or None when it is not one."""
        try:
            return cls.parse(text)
        except ValueError:
            return None

    @property
    def finite(self) -> bool:
        return math.isfinite(self.threshold)

    def holds(self, value: float) -> bool:
        """Whether ``value`` of the series holds against the threshold."""
        return OPERATORS[self.op](value, self.threshold)

    def limit(self) -> str:
        """The threshold as a person reads it: 'max 5', 'min 0.99', '== 1'."""
        number = self.number or f"{self.threshold:g}"
        if self.op in ("<", "<="):
            return f"max {number}"
        if self.op in (">", ">="):
            return f"min {number}"
        return f"{self.op} {number}"
