"""The annotations endpoints (to be written)."""

from fastapi import APIRouter

router = APIRouter(tags=["annotations"])
