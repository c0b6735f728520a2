"""Reading an experiment's Prefect records back through Prefect's client, for the tests of
its artifacts (test_prefect_artifacts, test_browser_ui)."""

from __future__ import annotations

import asyncio
from typing import Dict, List


def experiment_runs(api_url: str, name: str) -> Dict[str, list]:
    """``{"experiment": [flow runs], "trial": [flow runs]}`` of the experiment ``name``."""
    return asyncio.run(_experiment_runs(api_url, name))


def artifacts(api_url: str, **filters) -> List:
    """Every artifact (each version) matching the ``ArtifactFilter`` JSON ``filters``,
    newest first, e.g. ``artifacts(url, key={"any_": ["exp-leaderboard"]})``."""
    return asyncio.run(_artifacts(api_url, filters))


async def _experiment_runs(api_url: str, name: str) -> Dict[str, list]:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    tagged = FlowRunFilter(tags=FlowRunFilterTags(all_=[name]))
    async with PrefectClient(api=api_url) as client:
        out = {}
        for flow in ("experiment", "trial"):
            out[flow] = await client.read_flow_runs(
                limit=200, sort=FlowRunSort.ID_DESC, flow_run_filter=tagged,
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])))
        return out


async def _artifacts(api_url: str, filters: dict) -> List:
    # the filter endpoint directly: client.read_artifacts sends "flow_runs": null
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import Artifact

    async with PrefectClient(api=api_url) as client:
        response = await client.request("POST", "/artifacts/filter", json={
            "artifacts": filters, "limit": 200, "sort": "CREATED_DESC"})
        return [Artifact.model_validate(a) for a in response.json()]
