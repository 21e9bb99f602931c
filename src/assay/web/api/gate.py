"""``/api/v1/groups/{id}/gate``: the release gate's verdicts (decide now, or read the stored
ones) and the eval's accepted baseline, as ``assay gate`` and ``assay run baseline`` do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from assay.gate import BaselineChange, GateResult, Policy, mark_baseline, run_gate
from assay.gate.verdict import StoredVerdict, list_verdicts
from assay.store import Store
from assay.web.api.common import MAX_INT, GroupId, Page, errors
from assay.web.deps import PagingDep, StoreDep
from assay.web.serverfiles import server_file

router = APIRouter(tags=["gate"], responses=errors(404, 422))

POLICY_FOLDER = "policies"


class GateRequest(BaseModel):
    """What ``assay gate GROUP`` takes: a policy (a file on this server, or inline), extra
    slices, the accepted baseline, and the bootstrap's seed and resamples."""

    model_config = ConfigDict(extra="forbid")

    policy_path: str | None = Field(
        None,
        description="A policy file (.yaml/.yml or .toml) under ASSAY_HOME/policies on the "
        "server, named relative to that folder; no other file is read. Or send it inline.",
    )
    policy: Policy | None = Field(
        None,
        description='The policy itself ({"default": {...}, "candidates": {...}}); '
        "without either, the default thresholds apply.",
    )
    slice_by: list[str] = Field(
        default_factory=list, description="Also compare per value of these metadata keys."
    )
    against_baseline: bool = Field(
        False, description="Compare with the baseline arm of the eval's accepted baseline group."
    )
    seed: int = Field(0, ge=0, le=MAX_INT, description="Bootstrap seed: same seed, same intervals.")
    resamples: int = Field(10_000, ge=100, le=100_000, description="Bootstrap resamples.")


@router.post("/groups/{group_id}/gate", status_code=201, response_model=GateResult)
def gate_decide(group_id: GroupId, store: StoreDep, body: GateRequest | None = None) -> GateResult:
    """Give each candidate a verdict against the baseline: PASS, FAIL (every reason) or
    INCONCLUSIVE (the rows that would settle it); each verdict is stored. ``exit_code`` is
    the CLI's (0 pass, 1 fail, 3 inconclusive). The group must be finished."""
    body = body or GateRequest()
    return run_gate(
        store,
        group_id,
        policy_path=_policy_file(store, body.policy_path),
        policy=body.policy,
        slice_by=body.slice_by,
        against_baseline=body.against_baseline,
        seed=body.seed,
        resamples=body.resamples,
    )


def _policy_file(store: Store, given: str | None) -> Path | None:
    """Only under ASSAY_HOME/policies: a client must not read other files of the server."""
    if given is None:
        return None
    return server_file(store.settings.home, POLICY_FOLDER, given, "policy_path")


@router.get("/groups/{group_id}/gate", response_model=Page[StoredVerdict])
def gate_verdicts(group_id: GroupId, store: StoreDep, paging: PagingDep) -> dict[str, Any]:
    """The verdicts stored for the group by earlier gates, newest first."""
    return paging.envelope(list_verdicts(store, group_id, limit=paging.limit, offset=paging.offset))


@router.post("/groups/{group_id}/baseline", response_model=BaselineChange)
def gate_mark_baseline(group_id: GroupId, store: StoreDep) -> BaselineChange:
    """Make a finished group its eval's accepted baseline (unmarking the previous one), for
    ``against_baseline`` gates."""
    return mark_baseline(store, group_id)
