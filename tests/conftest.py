"""Shared test fixtures: seeded CPU generators and tiny configs."""

import pytest
import torch


@pytest.fixture
def generator():
    """A seeded CPU generator (every test that draws noise takes one)."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def _threads():
    """Tests run on a shared 2-core machine: keep torch to the cores it has."""
    torch.set_num_threads(2)
    yield
