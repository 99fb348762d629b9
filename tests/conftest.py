"""Shared fixtures: the devices every device-aware test runs on, and paths."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
GOLDEN = TESTS / "golden"
# The report's tables also live in ../shared/seed beside a checkout on the team's machines.
SHARED_SEED = TESTS.parent.parent / "shared" / "seed"

# spec_reference.py (the independent transcription of SPEC.md) is imported by name.
sys.path.insert(0, str(TESTS))


def available_devices() -> list[str]:
    """cpu, plus cuda and mps when this machine has them."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


@pytest.fixture(params=available_devices())
def device(request) -> torch.device:
    """Every available device; the same test body runs on each."""
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep gankit's caches inside the test's temporary folders, never in ~."""
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "gankit-cache"))


def pytest_report_header(config):
    return f"torch {torch.__version__}; devices: {', '.join(available_devices())}; threads {torch.get_num_threads()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
