"""Package metadata and repository layout stay consistent."""
import os
import re
import subprocess
import sys

import pytest

import ros_pgpt
from ros_helpers import REPO_ROOT


def test_package_xml_is_valid_format_3():
    from catkin_pkg.package import parse_package
    pkg = parse_package(str(REPO_ROOT / 'package.xml'))  # strict validation, raises on errors
    assert pkg.package_format == 3
    assert pkg.name == 'ros_pgpt'
    assert pkg.version == ros_pgpt.__version__
    assert [str(lic) for lic in pkg.licenses] == ['Apache-2.0']
    assert 'rosidl_interface_packages' in [g.name for g in pkg.member_of_groups]
    assert pkg.get_build_type() == 'ament_cmake'
    buildtool = {d.name for d in pkg.buildtool_depends}
    assert {'ament_cmake', 'ament_cmake_python', 'rosidl_default_generators'} <= buildtool
    exec_deps = {d.name for d in pkg.exec_depends + pkg.run_depends}
    assert {'rclpy', 'sensor_msgs', 'std_msgs', 'builtin_interfaces', 'std_srvs',
            'rosidl_default_runtime', 'geometry_msgs', 'vision_msgs', 'visualization_msgs'} <= exec_deps
    build_deps = {d.name for d in pkg.build_depends}
    assert {'geometry_msgs', 'vision_msgs', 'visualization_msgs'} <= build_deps  # CMakeLists.txt finds them


def test_vision_msgs_package_lists_every_message():
    """interfaces/vision_msgs: the venv route's vision_msgs (no wheel), a valid package building all 16 messages."""
    from catkin_pkg.package import parse_package
    root = REPO_ROOT / 'interfaces' / 'vision_msgs'
    pkg = parse_package(str(root / 'package.xml'))
    assert (pkg.name, pkg.version) == ('vision_msgs', '4.1.1')
    assert {'std_msgs', 'geometry_msgs'} <= {d.name for d in pkg.build_depends}
    cmake = (root / 'CMakeLists.txt').read_text()
    messages = sorted(p.name for p in (root / 'msg').glob('*.msg'))
    assert len(messages) == 16
    for name in messages:
        assert f'"msg/{name}"' in cmake


def test_setup_py_version_matches():
    res = subprocess.run([sys.executable, 'setup.py', '--version'], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == ros_pgpt.__version__


def test_cmake_lists_every_interface():
    cmake = (REPO_ROOT / 'CMakeLists.txt').read_text()
    files = sorted(str(p.relative_to(REPO_ROOT)) for d in ('msg', 'srv') for p in (REPO_ROOT / d).iterdir()
                   if p.suffix in ('.msg', '.srv'))
    assert files == ['msg/GroundedObject.msg', 'msg/GroundedObjectArray.msg', 'srv/Query.srv', 'srv/SetPrompts.srv']
    for f in files:
        assert f'"{f}"' in cmake


def test_export_is_a_subpackage():
    import ros_pgpt.export
    assert os.path.samefile(os.path.dirname(ros_pgpt.export.__file__), REPO_ROOT / 'export')


def test_generated_and_hand_written_modules_are_one_package():
    import ros_pgpt.cli
    import ros_pgpt.msg
    import ros_pgpt.srv
    pkg_dir = os.path.dirname(ros_pgpt.__file__)
    assert os.path.dirname(ros_pgpt.msg.__file__) == os.path.join(pkg_dir, 'msg')
    assert os.path.dirname(ros_pgpt.srv.__file__) == os.path.join(pkg_dir, 'srv')
    assert os.path.dirname(ros_pgpt.cli.__file__) == pkg_dir


def test_imports_from_outside_the_repo():
    """The installed (editable) package works from any directory, not only the repo root."""
    code = ('import ros_pgpt, ros_pgpt.export, ros_pgpt.cli\n'
            'from ros_pgpt.msg import GroundedObject, GroundedObjectArray\n'
            'from ros_pgpt.srv import Query\n'
            'print(ros_pgpt.__file__)')
    res = subprocess.run([sys.executable, '-c', code], cwd='/', capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO_ROOT / 'README.md').read_text()
    ci = [line for line in (REPO_ROOT / '.ci' / 'run').read_text().splitlines()
          if line.strip() and not line.startswith('#')]
    assert ci[-1].strip().removeprefix('exec ') == 'bash scripts/test.sh'
    assert 'bash scripts/test.sh' in readme
    assert 'bash scripts/setup.sh && .venv/bin/ros-pgpt demo' in readme
    assert os.access(REPO_ROOT / '.ci' / 'run', os.X_OK)


def test_generated_files_are_ignored_by_git():
    if not (REPO_ROOT / '.git').exists():
        pytest.skip('not a git checkout')
    paths = ['ros_pgpt/msg/__init__.py', 'ros_pgpt/srv/_query.py', '.venv/bin/python', 'build/x',
             'ros_pgpt/ros_pgpt_s__rosidl_typesupport_c.cpython-311-x86_64-linux-gnu.so']
    res = subprocess.run(['git', 'check-ignore', *paths], cwd=REPO_ROOT, capture_output=True, text=True)
    assert sorted(res.stdout.split()) == sorted(paths)
    res = subprocess.run(['git', 'check-ignore', 'ros_pgpt/cli.py', 'msg/GroundedObject.msg'],
                         cwd=REPO_ROOT, capture_output=True, text=True)
    assert res.stdout.strip() == ''


def test_readme_folders_exist():
    readme = (REPO_ROOT / 'README.md').read_text()
    folders = re.findall(r'^\| `([a-z_.]+)/` \|', readme, re.M)
    assert {'export', 'tests', 'model', 'ros', 'tools'} <= set(folders)
    for folder in folders:  # the repository's table, then the package map (folders of ros_pgpt/)
        assert (REPO_ROOT / folder).is_dir() or (REPO_ROOT / 'ros_pgpt' / folder).is_dir(), folder
