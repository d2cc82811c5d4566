"""scripts/setup.sh and its helpers: idempotent, fast when done, loud on failure."""
import os
import subprocess
import sys
import time

import pytest

from ros_helpers import REPO_ROOT

SETUP = REPO_ROOT / 'scripts' / 'setup.sh'
FIX = REPO_ROOT / 'scripts' / 'fix_ros_cmake.py'


def test_scripts_are_valid_bash():
    for script in ('scripts/setup.sh', 'scripts/test.sh', '.ci/run'):
        res = subprocess.run(['bash', '-n', str(REPO_ROOT / script)], capture_output=True, text=True)
        assert res.returncode == 0, f'{script}: {res.stderr}'


def _is_setup_venv():
    return (REPO_ROOT / '.venv').resolve() == __import__('pathlib').Path(sys.prefix).resolve()


@pytest.mark.skipif(not _is_setup_venv(), reason='tests do not run in the scripts/setup.sh venv')
def test_rerun_is_fast_and_up_to_date():
    t0 = time.monotonic()
    res = subprocess.run(['bash', str(SETUP), '--check'], capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, f'setup is not up to date (run bash scripts/setup.sh):\n{res.stdout}{res.stderr}'
    assert 'up to date' in res.stdout
    assert elapsed < 15, elapsed


def test_failure_names_the_step_and_leaves_no_complete_stamp(tmp_path):
    venv = tmp_path / 'venv'
    env = dict(os.environ, ROS_PGPT_VENV=str(venv), PYTHON=str(tmp_path / 'no-such-python'))
    res = subprocess.run(['bash', str(SETUP)], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "step 'preflight'" in res.stderr
    assert not (venv / '.ros_pgpt' / 'complete').exists()


@pytest.mark.slow
def test_failed_install_is_not_complete(tmp_path):
    """A pip failure (bogus torch pin) stops in step 'torch'; the venv is marked incomplete."""
    venv = tmp_path / 'venv'
    env = dict(os.environ, ROS_PGPT_VENV=str(venv), ROS_PGPT_TORCH_VERSION='0.0.0.1',
               PIP_NO_INDEX='1', PIP_FIND_LINKS=str(tmp_path))  # offline: fails fast
    env.pop('VIRTUAL_ENV', None)
    env.pop('_ROS_WHEELS_BOOTSTRAP_COMPLETE', None)
    res = subprocess.run(['bash', str(SETUP)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0, res.stdout
    assert "FAILED in step 'torch'" in res.stderr, res.stderr[-2000:]
    assert (venv / 'bin' / 'python').exists()
    assert not (venv / '.ros_pgpt' / 'complete').exists()
    res = subprocess.run(['bash', str(SETUP), '--check'], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and 'NOT up to date' in res.stdout


OLD = ('INTERFACE_INCLUDE_DIRECTORIES "/opt/python/{tag}/include/python{v};'
       '/opt/python/{tag}/lib/python{v}/site-packages/numpy/_core/include"\n')


@pytest.mark.parametrize('tag,v', [('cp310-cp310', '3.10'), ('cp311-cp311', '3.11'),
                                   ('cp313-cp313t', '3.13t')])
def test_fix_ros_cmake_rewrites_include_dirs_idempotently(tmp_path, tag, v):
    import sysconfig

    import numpy
    cmake = tmp_path / 'share' / 'foo_msgs' / 'cmake' / 'export_foo__rosidl_generator_pyExport.cmake'
    cmake.parent.mkdir(parents=True)
    cmake.write_text('# header\n' + OLD.format(tag=tag, v=v))
    other = tmp_path / 'share' / 'bar' / 'cmake' / 'bar.cmake'
    other.parent.mkdir(parents=True)
    other.write_text('set(X 1)\n')

    res = subprocess.run([sys.executable, str(FIX), str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert '1 file(s) rewritten' in res.stdout
    text = cmake.read_text()
    assert '/opt/python' not in text
    assert f'"{sysconfig.get_paths()["include"]};{numpy.get_include()}"' in text
    assert other.read_text() == 'set(X 1)\n'

    res = subprocess.run([sys.executable, str(FIX), str(tmp_path)], capture_output=True, text=True)
    assert '0 file(s) rewritten' in res.stdout
    assert cmake.read_text() == text


def test_venv_cmake_files_are_fixed():
    share = os.path.join(sys.prefix, 'share')
    hits = subprocess.run(['grep', '-rl', '--include=*.cmake', '/opt/python/', share],
                          capture_output=True, text=True)
    assert hits.stdout == '', f'unpatched CMake files: {hits.stdout}'
