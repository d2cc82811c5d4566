"""Shared pytest fixtures; the ROS helpers themselves are in ros_helpers.py.

    def test_something(ros_env, ros_context):
        node = rclpy.create_node('n', context=ros_context)   # this process
        with RosProcess(['tests/peer.py'], ros_env):          # another one
            ...
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ros_helpers import REPO_ROOT, isolated_ros_env, rclpy_context  # noqa: E402


@pytest.fixture
def repo_root():
    return REPO_ROOT


@pytest.fixture
def ros_env(tmp_path):
    """Environment dict of an isolated ROS world (own domain id, loopback, logs in tmp)."""
    return isolated_ros_env(tmp_path)


@pytest.fixture
def ros_context(ros_env):
    """An initialised private rclpy Context on the ``ros_env`` domain."""
    with rclpy_context(ros_env) as ctx:
        yield ctx


TINY_CONFIG = Path(__file__).resolve().parent / "data" / "tiny_model.yaml"
