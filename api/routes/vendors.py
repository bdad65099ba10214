"""Each vendor's estimates across audits."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api.db import VendorEstimate
from api.deps import SessionDep, TenantDep
from api.jobs import iso
from api.problems import Problem, problem_responses
from api.schemas import VendorHistory, VendorPoint, VendorSummary

router = APIRouter(tags=["vendors"])


def _point(row: VendorEstimate) -> VendorPoint:
    return VendorPoint(
        audit_id=row.job_id,
        created_at=iso(row.created_at),
        n_scored=row.n_scored,
        n_flagged=row.n_flagged,
        flag_rate=row.flag_rate,
        prevalence=row.prevalence,
        ci_low=row.ci_low,
        ci_high=row.ci_high,
    )


@router.get("/vendors", operation_id="listVendors", response_model=list[VendorSummary])
def list_vendors(session: SessionDep, tenant: TenantDep) -> list[VendorSummary]:
    rows = session.scalars(
        select(VendorEstimate)
        .where(VendorEstimate.tenant_id == tenant.id)
        .order_by(VendorEstimate.vendor, VendorEstimate.created_at)
    ).all()
    by_vendor: dict[str, list[VendorEstimate]] = {}
    for row in rows:
        by_vendor.setdefault(row.vendor, []).append(row)
    return [VendorSummary(vendor=v, audits=len(r), latest=_point(r[-1])) for v, r in by_vendor.items()]


@router.get(
    "/vendors/{vendor}/history",
    operation_id="getVendorHistory",
    response_model=VendorHistory,
    responses=problem_responses((404, "this key never audited the vendor"), 422),
)
def vendor_history(vendor: str, session: SessionDep, tenant: TenantDep) -> VendorHistory:
    rows = session.scalars(
        select(VendorEstimate)
        .where(VendorEstimate.tenant_id == tenant.id, VendorEstimate.vendor == vendor)
        .order_by(VendorEstimate.created_at)
    ).all()
    if not rows:
        raise Problem(404, f"no audit of vendor {vendor!r} for this key")
    return VendorHistory(vendor=vendor, history=[_point(r) for r in rows])
