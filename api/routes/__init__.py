"""Endpoints grouped by concept, each an APIRouter that api/app.py includes."""
