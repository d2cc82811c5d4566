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
    if not (PREFIX / 'share' / 'vision_msgs' / 'package.xml').is_file():
        pytest.skip(f'vision_msgs is not installed in {PREFIX} (the package depends on the system vision_msgs; '
                    f'scripts/setup.sh builds it into the venv from interfaces/vision_msgs)')
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


def _in_sourced_install(ws, code, env=None, timeout=120):
    """Run python code in a bash that sourced the workspace's install/setup.bash."""
    env = {k: v for k, v in (env or os.environ).items() if k not in ('PYTHONPATH', 'AMENT_PREFIX_PATH', 'VIRTUAL_ENV')}
    script = (f'source {ws}/install/setup.bash && cd {ws} && '
              f'exec {sys.executable} -c "$0"')
    return subprocess.run(['bash', '-c', script, code], env=env, capture_output=True, text=True, timeout=timeout)


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


# Runs in the sourced install: starts the installed perception_node, asks a query with inline depth (a
# wall at 1.5 m behind everything) and receives Detection2DArray / Detection3DArray with subscribers
# built from the vision_msgs the package depends on.
_NODE_3D = r"""
import json, subprocess, sys, time
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray, Detection3DArray
import ros_pgpt, vision_msgs
from ros_pgpt.data import SceneGenerator
from ros_pgpt.ros.query import QueryClient, build_request

node = subprocess.Popen([sys.executable, EXE, '--ros-args', '-r', '__ns:=/colcon3d'],
                        stdout=open('colcon3d_node.log', 'w'), stderr=subprocess.STDOUT)
try:
    client = QueryClient('/colcon3d/ros_pgpt/query')
    got = {'2d': [], '3d': []}
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    client.node.create_subscription(Detection2DArray, '/colcon3d/ros_pgpt/detections_2d', got['2d'].append, reliable)
    client.node.create_subscription(Detection3DArray, '/colcon3d/ros_pgpt/detections_3d', got['3d'].append, reliable)
    assert client.wait(180.0, alive=lambda: node.poll() is None), 'no query service'
    image = SceneGenerator(resolutions=[(640, 480)]).sample(0, n_queries=1).scene.image
    request = build_request('point to every shape', image=image, frame_id='cam')
    request.depth = Image(encoding='32FC1', width=640, height=480, step=640 * 4)
    request.depth.data = np.full((480, 640), 1.5, '<f4').tobytes()
    request.camera_info = CameraInfo(width=640, height=480, k=[525.0, 0, 319.5, 0, 525.0, 239.5, 0, 0, 1])
    response, _ = client.call(request, 120.0)
    deadline = time.monotonic() + 10
    while not (got['2d'] and got['3d']) and time.monotonic() < deadline:
        client.spin(0.1)
    print(json.dumps({'ros_pgpt': ros_pgpt.__file__, 'vision_msgs': vision_msgs.__file__,
                      'success': response.success, 'message': response.message,
                      'z': [o.centroid.z for o in response.result.objects],
                      'class_ids': [d.results[0].hypothesis.class_id for m in got['2d'] for d in m.detections],
                      'z_3d': [d.bbox.center.position.z for m in got['3d'] for d in m.detections]}))
    client.close()
finally:
    node.terminate()
    node.wait(30)
"""


def test_installed_node_publishes_vision_msgs_with_3d(colcon_ws, tmp_path):
    """The colcon-installed node: 3D from inline depth, Detection2DArray/Detection3DArray received."""
    import json

    from ros_helpers import isolated_ros_env

    exe = colcon_ws / 'install' / 'ros_pgpt' / 'lib' / 'ros_pgpt' / 'perception_node'
    res = _in_sourced_install(colcon_ws, f'EXE = {str(exe)!r}\n' + _NODE_3D, env=isolated_ros_env(tmp_path), timeout=400)
    log = colcon_ws / 'colcon3d_node.log'
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:] + (log.read_text()[-3000:] if log.exists() else '')
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out['ros_pgpt'].startswith(str(colcon_ws / 'install')), out['ros_pgpt']
    assert out['vision_msgs'].startswith(str(PREFIX)), out['vision_msgs']  # the prefix's ("system") vision_msgs
    assert out['success'], out['message']
    assert out['z'] and all(abs(z - 1.5) <= 0.03 for z in out['z']), out['z']
    assert out['class_ids'] == ['shape'] * len(out['z'])  # the object's phrase
    assert len(out['z_3d']) == len(out['z']) and all(abs(z - 1.5) <= 0.03 for z in out['z_3d'])
