"""``ros-pgpt info``: what is installed and importable.

``collect()`` returns the same facts as a dict (used by the demo and tests).
"""
import argparse
import importlib.metadata as metadata
import json
import os
import platform
import sys

from ros_pgpt import __version__

# Distributions whose versions are reported (read from metadata, not imported).
_REPORTED = ('numpy', 'transformers', 'onnx', 'onnxruntime', 'opencv-python-headless', 'rosbags')


def _dist_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _setup_state():
    """State of a scripts/setup.sh venv: 'complete', 'incomplete' or None."""
    state = os.path.join(sys.prefix, '.ros_pgpt')
    if not os.path.isdir(state):
        return None
    return 'complete' if os.path.isfile(os.path.join(state, 'complete')) else 'incomplete'


def collect(torch=True):
    info = {
        'ros_pgpt': __version__,
        'ros_pgpt_path': os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        'python': platform.python_version(),
        'python_executable': sys.executable,
        'platform': platform.platform(),
        'setup': _setup_state(),
    }

    try:
        import rclpy  # noqa: F401
        from rclpy.utilities import get_rmw_implementation_identifier
        info['rclpy'] = _dist_version('ros-rclpy') or _dist_version('rclpy') or 'unknown version'
        info['rmw'] = get_rmw_implementation_identifier()
        info['ros_domain_id'] = os.environ.get('ROS_DOMAIN_ID', '0 (default)')
    except Exception as exc:  # ImportError, or a broken middleware install
        info['rclpy'] = None
        info['rclpy_error'] = f'{type(exc).__name__}: {exc}'

    try:
        from ros_pgpt.msg import GroundedObject, GroundedObjectArray  # noqa: F401
        from ros_pgpt.srv import Query  # noqa: F401
        info['interfaces'] = ['ros_pgpt/msg/GroundedObject', 'ros_pgpt/msg/GroundedObjectArray',
                              'ros_pgpt/srv/Query']
    except Exception as exc:
        info['interfaces'] = None
        info['interfaces_error'] = f'{type(exc).__name__}: {exc}'

    if torch:
        try:
            import torch as _torch
            info['torch'] = _torch.__version__
            info['torch_cuda'] = bool(_torch.cuda.is_available())
            info['torch_threads'] = _torch.get_num_threads()
        except Exception as exc:
            info['torch'] = None
            info['torch_error'] = f'{type(exc).__name__}: {exc}'

    info['packages'] = {name: _dist_version(name) for name in _REPORTED}
    return info


def format_info(info):
    def yes(value, error_key):
        if value:
            return value if isinstance(value, str) else 'yes'
        return f"NO ({info.get(error_key, 'not found')})"

    lines = [
        f"ros_pgpt     {info['ros_pgpt']}  ({info['ros_pgpt_path']})",
        f"python       {info['python']}  ({info['python_executable']})",
        f"platform     {info['platform']}",
    ]
    if info.get('setup'):
        lines.append(f"setup.sh     {info['setup']}")
    rclpy_line = yes(info['rclpy'], 'rclpy_error')
    if info.get('rmw'):
        rclpy_line += f"  (rmw {info['rmw']}, ROS_DOMAIN_ID {info['ros_domain_id']})"
    lines.append(f'rclpy        {rclpy_line}')
    ifaces = info['interfaces']
    lines.append('interfaces   ' + (', '.join(ifaces) if ifaces else yes(None, 'interfaces_error')))
    if 'torch' in info:
        torch_line = yes(info['torch'], 'torch_error')
        if info.get('torch'):
            torch_line += f"  (cuda {'yes' if info['torch_cuda'] else 'no'}, {info['torch_threads']} threads)"
        lines.append(f'torch        {torch_line}')
    others = ', '.join(f'{k} {v}' for k, v in info['packages'].items() if v)
    if others:
        lines.append(f'packages     {others}')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='ros-pgpt info', description=__doc__.splitlines()[0])
    parser.add_argument('--json', action='store_true', help='print JSON instead of text')
    parser.add_argument('--no-torch', action='store_true', help='do not import torch (faster)')
    args = parser.parse_args(argv)
    info = collect(torch=not args.no_torch)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
