"""Start the perception node as a child process (the demo and the tests use this).

``launch``/``launch_ros`` are not installable from PyPI, so this is the
venv-route equivalent of ``launch/perception.launch.py``: the same
``config/perception.yaml``, extra parameter overrides in a second params file,
and remappings, all through ``--ros-args``.
"""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PARAMS_FILE = REPO_ROOT / 'config' / 'perception.yaml'


def params_file_path() -> Path:
    """config/perception.yaml of the source tree, else the installed share/ros_pgpt/config copy."""
    if DEFAULT_PARAMS_FILE.is_file():
        return DEFAULT_PARAMS_FILE
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory('ros_pgpt')) / 'config' / 'perception.yaml'
    except Exception:  # noqa: BLE001
        return DEFAULT_PARAMS_FILE


def write_params_file(path, params: dict, node: str = '/**') -> Path:
    """A ROS 2 params YAML with ``params`` for ``node`` (default: every node)."""
    path = Path(path)
    path.write_text(yaml.safe_dump({node: {'ros__parameters': params}}, sort_keys=False))
    return path


def node_command(*, params_files=(), remaps: dict | None = None, namespace: str | None = None,
                 node_name: str | None = None, use_default_params: bool = True) -> list[str]:
    """argv that runs ``ros-pgpt node`` with this interpreter."""
    argv = [sys.executable, '-m', 'ros_pgpt', 'node', '--ros-args']
    files = ([params_file_path()] if use_default_params else []) + list(params_files)
    for f in files:
        argv += ['--params-file', str(f)]
    for src, dst in (remaps or {}).items():
        argv += ['-r', f'{src}:={dst}']
    if namespace:
        argv += ['-r', f'__ns:={namespace}']
    if node_name:
        argv += ['-r', f'__node:={node_name}']
    return argv


def isolated_env(ros_home, domain_id: int | None = None, base: dict | None = None) -> dict:
    """Environment of a private ROS world: own domain id, loopback discovery, logs under ``ros_home``."""
    env = dict(os.environ if base is None else base)
    for var in ('ROS_LOCALHOST_ONLY', 'ROS_STATIC_PEERS', 'ROS_DISCOVERY_SERVER', 'RMW_IMPLEMENTATION',
                'FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE'):
        env.pop(var, None)
    ros_home = Path(ros_home)
    (ros_home / 'log').mkdir(parents=True, exist_ok=True)
    env.update({
        'ROS_DOMAIN_ID': str(domain_id if domain_id is not None else random.randint(1, 100)),
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'ROS_HOME': str(ros_home), 'ROS_LOG_DIR': str(ros_home / 'log'),
        'RCUTILS_COLORIZED_OUTPUT': '0', 'PYTHONUNBUFFERED': '1',
    })
    return env
