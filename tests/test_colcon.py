"""colcon builds the package in a temporary workspace; the install imports."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ros_helpers import REPO_ROOT

# The build alone takes ~20-60 s; slow machines get room (setup counts against the timeout).
pytestmark = [pytest.mark.slow, pytest.mark.colcon, pytest.mark.timeout(900)]

PREFIX = Path(sys.prefix)
COLCON = PREFIX / 'bin' / 'colcon'

# What the package needs; copied (not symlinked) so the build cannot touch the repo.
_IGNORE = shutil.ignore_patterns('.git', '.venv', '.venv.lock', 'build', 'install', 'log', '__pycache__',
                                 '*.egg-info', '.pytest_cache')


@pytest.fixture(scope='module')
def colcon_ws(tmp_path_factory):
    if not COLCON.exists():
        pytest.fail(f'{COLCON} missing (colcon-common-extensions is in requirements.txt)')
    ws = tmp_path_factory.mktemp('colcon_ws')
    shutil.copytree(REPO_ROOT, ws / 'src' / 'ros_pgpt', ignore=_IGNORE)
    env = dict(os.environ)
    env['AMENT_PREFIX_PATH'] = str(PREFIX)
    env['CMAKE_PREFIX_PATH'] = str(PREFIX)
    env['PATH'] = f'{PREFIX / "bin"}{os.pathsep}{env.get("PATH", "")}'
    res = subprocess.run(
        [str(COLCON), 'build', '--packages-select', 'ros_pgpt', '--event-handlers', 'console_direct+',
         '--cmake-args', f'-DPython3_EXECUTABLE={sys.executable}', '-DBUILD_TESTING=OFF'],
        cwd=ws, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f'colcon build failed:\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}'
    return ws


def _in_sourced_install(ws, code):
    """Run python code in a bash that sourced the workspace's install/setup.bash."""
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'AMENT_PREFIX_PATH', 'VIRTUAL_ENV')}
    script = (f'source {ws}/install/setup.bash && cd {ws} && '
              f'exec {sys.executable} -c "$0"')
    return subprocess.run(['bash', '-c', script, code], env=env, capture_output=True, text=True, timeout=120)


def test_installed_interfaces_and_modules_import_together(colcon_ws):
    site = colcon_ws / 'install' / 'ros_pgpt' / 'lib' / f'python{sys.version_info.major}.{sys.version_info.minor}' / 'site-packages' / 'ros_pgpt'
    code = (
        'import os, ros_pgpt, ros_pgpt.msg, ros_pgpt.srv, ros_pgpt.export, ros_pgpt.cli\n'
        'from ros_pgpt.msg import GroundedObject, GroundedObjectArray\n'
        'from ros_pgpt.srv import Query\n'
        'from rclpy.serialization import serialize_message, deserialize_message\n'
        'm = GroundedObjectArray(prompt="p", objects=[GroundedObject(phrase="x", score=0.5)])\n'
        'assert deserialize_message(serialize_message(m), GroundedObjectArray) == m\n'
        'print(ros_pgpt.__file__); print(ros_pgpt.msg.__file__); print(ros_pgpt.export.__file__)\n'
        'print(ros_pgpt.__version__)\n')
    res = _in_sourced_install(colcon_ws, code)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.split()
    # Everything comes from the colcon install, not from the repo / venv.
    assert lines[0] == str(site / '__init__.py')
    assert lines[1] == str(site / 'msg' / '__init__.py')
    assert lines[2] == str(site / 'export' / '__init__.py')
    assert lines[3] == '0.1.0'


def test_install_layout_for_ros2_run_and_launch(colcon_ws):
    install = colcon_ws / 'install' / 'ros_pgpt'
    exe = install / 'lib' / 'ros_pgpt' / 'perception_node'
    assert exe.is_file() and os.access(exe, os.X_OK)
    assert (install / 'share' / 'ros_pgpt' / 'package.xml').is_file()
    assert (install / 'share' / 'ros_pgpt' / 'launch').is_dir()
    assert (install / 'share' / 'ros_pgpt' / 'config').is_dir()
    assert (install / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'ros_pgpt').is_file()
    assert (install / 'share' / 'ros_pgpt' / 'msg' / 'GroundedObject.msg').is_file()
    # The hand-written __init__ replaced the generated (empty) one.
    site = next((install / 'lib').glob('python3*/site-packages/ros_pgpt'))
    assert '__version__' in (site / '__init__.py').read_text()
    assert list(site.glob('ros_pgpt_s__rosidl_typesupport_c*.so'))
