"""The deploy endpoints (to be written)."""

from fastapi import APIRouter

router = APIRouter(tags=["deploy"])
