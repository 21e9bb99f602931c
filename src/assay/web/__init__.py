"""The web app: a REST API under ``/api/v1`` and server-rendered pages, over the services.

``create_app`` builds it; ``assay serve`` runs it with uvicorn.
"""

from assay.web.app import create_app

__all__ = ["create_app"]
