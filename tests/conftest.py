"""Fixtures shared across the test tree."""

import pytest

from simulator.cloud import FakeCloud

CLOUD_KEY = "the-api-key"  # the api-key the `cloud` fixture accepts


@pytest.fixture
async def cloud():
    """The fake SYNQ cloud on loopback, accepting ``CLOUD_KEY``."""
    fake = FakeCloud(CLOUD_KEY)
    await fake.start()
    yield fake
    await fake.close()
