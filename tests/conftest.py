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


TINY_CONFIG = Path(__file__).resolve().parent / "data" / "tiny_model.yaml"  # also export/testing.py's


@pytest.fixture
def denormals_kept():
    """Denormal floats kept (the CPU's default) in this thread for one test; yields a check that they
    are flushed to zero now (ros_pgpt/training/numerics.py). The thread's mode is restored afterwards."""
    import torch

    def flushed() -> bool:
        return (torch.tensor([1e-39]) * 1.0).item() == 0.0  # 1e-39: below float32's smallest normal

    before = flushed()
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormal floats (it needs x86 SSE3 or AArch64)")
    assert not flushed()
    yield flushed
    torch.set_flush_denormal(before)
