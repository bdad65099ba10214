"""The audit report: the pydantic models (``report.json`` is the canonical output), its HTML
and Markdown renderings, and vendor trends across reports (``auditor compare``)."""

from auditor.report.models import REPORT_SCHEMA_VERSION, Report

__all__ = ["REPORT_SCHEMA_VERSION", "Report"]
