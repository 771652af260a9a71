"""The versions endpoints (to be written)."""

from fastapi import APIRouter

router = APIRouter(tags=["versions"])
