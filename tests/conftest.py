"""Shared pytest fixtures for the end-to-end suite (see tests/columba.py)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import columba  # noqa: E402


@pytest.fixture
def make_instance():
    """Factory for Instances that are stopped and removed after the test:
    make_instance(services=[...], ...) returns an unstarted Instance."""
    made = []

    def factory(**kwargs):
        inst = columba.Instance(**kwargs)
        made.append(inst)
        return inst
    yield factory
    for inst in made:
        inst.stop()
        inst.cleanup()


@pytest.fixture(scope="session")
def build_dir():
    """The build tree the tests run against."""
    return columba.build_dir()
