"""`aiworld api`: the API under uvicorn."""

from __future__ import annotations

import uvicorn

from aiworld.config import Settings
from aiworld.ops.tracing import configure_tracing
from api.app import create_app


def run_api(settings: Settings) -> None:
    configure_tracing(settings.observability, "api")
    app = create_app(settings)
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level=settings.log_level.lower())
