"""Fixtures of the voice tests."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command


@pytest.fixture
def demo_data(transactional_db):
    """The demo contact center (as tests/browser uses it): agent1 Anna Becker in Bookings, …"""
    from agents.models import NotReadyReason

    call_command("seed_demo", allow_production=True, stdout=io.StringIO())
    NotReadyReason.objects.get_or_create(
        code=NotReadyReason.MISSED,
        defaults={"name": "Missed offer", "is_system": True, "is_active": True, "position": 999},
    )
