"""What ``sgnlake check`` found: findings with a severity, per-run summaries, the report.

Severities:

``problem``
    The lake is damaged or inconsistent (a committed chunk is missing or does not
    decode, attrs contradict the arrays, ...). ``sgnlake check`` exits with 1.
``warning``
    Something a user should know that readers cope with (a failed run, non-finite
    values in committed data, an orphan result).
``info``
    Normal states worth a line (an uncommitted tail left by a crash, an
    interrupted run that can be resumed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PROBLEM = "problem"
WARNING = "warning"
INFO = "info"
SEVERITIES = (PROBLEM, WARNING, INFO)


@dataclass
class Finding:
    """One thing :func:`check_lake` found, located as precisely as possible."""

    severity: str
    message: str
    run: str | None = None
    tensor: str | None = None
    array: str | None = None
    iteration: int | None = None
    chunk: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """The finding as one line of text."""
        return f"{self.severity.upper()}: {self.message}"


@dataclass
class RunSummary:
    """Commit state and chunk count of one run."""

    run_id: str
    status: str = "?"
    committed: int = 0
    planned: int = 0
    stored: int = 0
    uncommitted_tail: int = 0
    tensors: int = 0
    chunks_checked: int = 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckReport:
    """Result of :func:`check_lake`; ``ok`` is True when no finding is a problem."""

    location: str
    schema: str = ""
    version: int = 0
    runs: list[RunSummary] = field(default_factory=list)
    results: int = 0
    checkpoints: int = 0
    chunks_checked: int = 0
    bytes_checked: int = 0
    data_checked: bool = True
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == PROBLEM]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, severity: str, message: str, **where: Any) -> None:
        self.findings.append(Finding(severity, message, **where))

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "schema": self.schema,
            "version": self.version,
            "ok": self.ok,
            "n_problems": len(self.problems),
            "n_warnings": len(self.warnings),
            "chunks_checked": self.chunks_checked,
            "bytes_checked": self.bytes_checked,
            "data_checked": self.data_checked,
            "results": self.results,
            "checkpoints": self.checkpoints,
            "runs": [r.to_dict() for r in self.runs],
            "findings": [f.to_dict() for sev in SEVERITIES for f in self.findings if f.severity == sev],
        }

    def format_text(self) -> str:
        """A readable multi-line report (what ``sgnlake check`` prints)."""
        lines = [
            f"lake {self.location}: schema {self.schema} version {self.version}, {len(self.runs)} run(s)"
        ]
        for r in self.runs:
            tail = f", uncommitted tail {r.uncommitted_tail}" if r.uncommitted_tail else ""
            lines.append(
                f"  run {r.run_id}: {r.status}, {r.committed}/{r.planned} snapshots committed"
                f"{tail}, {r.tensors} tensor(s), {r.chunks_checked} chunk(s) read"
            )
        lines.append(f"  results: {self.results} group(s); checkpoints: {self.checkpoints} group(s)")
        for sev in SEVERITIES:
            lines.extend(f.line() for f in self.findings if f.severity == sev)
        read = (
            f"{self.chunks_checked} chunk(s), {self.bytes_checked / 1e6:.1f} MB decoded"
            if self.data_checked
            else "chunks not read (--quick)"
        )
        verdict = "OK" if self.ok else "DAMAGED"
        lines.append(f"{verdict}: {len(self.problems)} problem(s), {len(self.warnings)} warning(s); {read}")
        return "\n".join(lines)
