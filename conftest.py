import pytest

pytest_plugins = ["pytake_devstack.pytest_plugin"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Chaos tests kill and restart the shared servers: they run after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("chaos") is not None)
