"""Fixtures shared by the unit and integration tests.

pytest puts this folder on sys.path (it holds this conftest), so the support modules beside it
(`paths`, `candidate_factory`, `openai_server`, `sandbox_support`, `reference_eplb`) import by name
from tests/unit and tests/integration alike. Tests marked `gpu` skip where CUDA is absent.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai_server import FakeOpenAIServer


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    """A started fake OpenAI-compatible server on 127.0.0.1, stopped after the test."""
    with FakeOpenAIServer() as server:
        yield server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `gpu`-marked tests cleanly on machines without CUDA (torch is imported only if needed)."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in gpu_items:
        item.add_marker(skip)
