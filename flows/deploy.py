"""Prefect deployments of recipes: ``corpusforge serve`` registers one with its schedule and
runs what it schedules; the recipe, resolved, is the deployment's parameter (editable in the UI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.build import flow_for
from flows.recipe import Recipe, schedule_of


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
