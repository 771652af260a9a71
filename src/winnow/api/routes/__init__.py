"""One module per resource; :data:`ROUTERS` is what the app mounts under ``/api/v1``."""

from winnow.api.routes import (
    annotations,
    checks,
    deploy,
    evaluations,
    fleet,
    forks,
    images,
    jobs,
    merge_requests,
    models,
    projects,
    queue,
    selection,
    versions,
)

ROUTERS = [
    projects.router,
    images.router,
    annotations.router,
    versions.router,
    models.router,
    checks.router,
    evaluations.router,
    jobs.router,
    deploy.router,
    selection.router,
    queue.router,
    merge_requests.router,
    forks.router,
    fleet.router,
]
