"""``python -m services.apiserver``: serve the REST API until SIGTERM / SIGINT."""

from __future__ import annotations

from typing import Any

from edgebus.runtime import Service, main, setup_logging
from services.apiserver.config import Settings
from services.apiserver.service import build


def _build() -> Service[Any]:
    settings = Settings()
    setup_logging("apiserver", settings)
    return build(settings)


if __name__ == "__main__":
    main(_build)
