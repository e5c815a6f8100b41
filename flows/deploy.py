"""Prefect deployments of recipes: ``corpusforge serve`` registers one with its schedule and
runs what it schedules in its own process, or (``--work-pool``) registers it with a work pool
whose workers run it; the recipe, resolved, is the deployment's parameter (editable in the UI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.build import flow_for
from flows.recipe import Recipe, schedule_of
from pipelines.errors import CorpusforgeError


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("corpusforge")
    except PackageNotFoundError:
        return "unknown"


def deployment_for(recipe: Recipe, out_dir: Path, *, name: str | None = None) -> Any:
    """A runner deployment of the recipe's flow, scheduled by ``orchestration.cron`` if set."""
    from prefect.deployments.runner import EntrypointType

    orchestration = recipe.orchestration
    schedule = schedule_of(orchestration.cron, orchestration.timezone) if orchestration.cron else None
    return flow_for(recipe).to_deployment(
        name=name or recipe.name,
        schedule=schedule,
        parameters={"recipe": recipe.model_dump(mode="json"), "out_dir": str(out_dir)},
        description=recipe.description or f"corpusforge recipe {recipe.name}",
        tags=["corpusforge", recipe.name],
        version=_package_version(),
        # Runs import the flow by module (flows.build), so they work from any directory.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def serve_deployments(deployments: list[Any]) -> None:
    """Register the deployments and run their flow runs in this process until interrupted."""
    from prefect import serve

    serve(*deployments)


def work_pool(name: str) -> Any:
    """The work pool ``name`` on the Prefect server at PREFECT_API_URL; CorpusforgeError saying
    how to create it when it does not exist, or naming the URL when the server cannot be reached.

    The pool is not created here: a deployment on a pool nobody runs a worker for (a typo in the
    name) would wait forever, and a pool's type and base job template are the platform's choice.
    """
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    try:
        with get_client(sync_client=True) as client:
            return client.read_work_pool(name)
    except ObjectNotFound:
        raise CorpusforgeError(
            f"work pool {name!r} does not exist on the Prefect server at {PREFECT_API_URL.value()}; "
            f"create it with `prefect work-pool create {name} --type process` and run again"
        ) from None
    except httpx.TransportError as exc:
        raise CorpusforgeError(f"cannot reach the Prefect server at {PREFECT_API_URL.value()}: {exc}") from None


def register_deployments(deployments: list[Any], pool_name: str) -> list[Any]:
    """Create (or update) the deployments on the server, on the work pool ``pool_name``, with
    their schedules; returns their ids. Nothing runs here: the pool's workers run the flow runs,
    importing the flow by module path, so no code is uploaded (no build or push steps)."""
    from prefect.deployments.runner import DeploymentApplyError

    ids = []
    for deployment in deployments:
        try:
            ids.append(deployment.apply(work_pool_name=pool_name))
        except DeploymentApplyError as exc:
            raise CorpusforgeError(f"the Prefect server refused deployment {deployment.full_name}: {exc}") from None
    return ids
