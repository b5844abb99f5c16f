"""The paper's audit: per window of message timestamps, what audited producers counted
(``_audit``), what the brokers hold and what the warehouse loaded (``headrace audit``)."""

from .compare import AuditError
from .report import audit_report, format_table

__all__ = ["AuditError", "audit_report", "format_table"]
