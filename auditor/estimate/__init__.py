"""Estimation: shares of LLM-written text from scored items (:class:`Estimator`)."""

from auditor.estimate.estimator import Estimator, VendorEstimate, WorkerEstimate

__all__ = ["Estimator", "VendorEstimate", "WorkerEstimate"]
