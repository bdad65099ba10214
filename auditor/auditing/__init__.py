"""Audits of deliveries: the options object, the resumable scoring of every row, the
aggregation into per-vendor and per-worker estimates, and the one ``run_audit`` that the
command line and the service's job workers both call."""

from auditor.auditing.options import COLUMN_ROLES, AuditColumns, AuditOptions
from auditor.auditing.run import run_audit
from auditor.auditing.work import plan

__all__ = ["COLUMN_ROLES", "AuditColumns", "AuditOptions", "plan", "run_audit"]
