"""The ros-pgpt command: lazy dispatcher, info (the demo: tests/test_demo.py)."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ros_pgpt import __version__, cli

BIN = Path(sys.prefix) / 'bin' / 'ros-pgpt'


def run(args, env=None, timeout=120):
    exe = [str(BIN)] if BIN.exists() else [sys.executable, '-m', 'ros_pgpt']
    return subprocess.run(exe + args, env=env, capture_output=True, text=True, timeout=timeout)


def test_console_script_is_installed():
    assert BIN.exists() or shutil.which('ros-pgpt'), 'ros-pgpt console script missing (run scripts/setup.sh)'


def test_help_lists_commands_and_imports_nothing_heavy():
    code = ('import sys, contextlib, io\n'
            'from ros_pgpt import cli\n'
            'with contextlib.redirect_stdout(io.StringIO()) as out:\n'
            '    try:\n'
            '        cli.main(["--help"])\n'
            '    except SystemExit:\n'
            '        pass\n'
            'heavy = sorted(m for m in ("torch", "rclpy", "numpy", "transformers") if m in sys.modules)\n'
            'assert not heavy, heavy\n'
            'print(out.getvalue())\n')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    for name in cli.COMMANDS:
        assert name in res.stdout


def test_help_is_fast():
    t0 = time.monotonic()
    res = run(['--help'])
    assert res.returncode == 0, res.stderr
    assert 'info' in res.stdout and 'demo' in res.stdout
    assert time.monotonic() - t0 < 10  # no torch import (~2 s alone) and no model loading


@pytest.mark.parametrize('name', sorted(cli.COMMANDS))
def test_every_registered_command_resolves(name):
    target, text = cli.COMMANDS[name]
    assert ':' in target and text
    assert callable(cli.resolve(name))


def test_unknown_command_fails():
    res = run(['no-such-command'])
    assert res.returncode == 2
    assert 'invalid choice' in res.stderr


def test_version():
    res = run(['--version'])
    assert res.returncode == 0 and __version__ in res.stdout


def test_subcommand_gets_its_arguments():
    res = run(['info', '--help'])
    assert res.returncode == 0
    assert '--json' in res.stdout and 'ros-pgpt info' in res.stdout


def test_info_json_reports_the_environment():
    res = run(['info', '--json'])
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info['ros_pgpt'] == __version__
    assert info['python'] == '.'.join(map(str, sys.version_info[:3]))
    assert info['rclpy'], info.get('rclpy_error')
    assert info['rmw'] == 'rmw_fastrtps_cpp'
    assert info['interfaces'] == ['ros_pgpt/msg/GroundedObject', 'ros_pgpt/msg/GroundedObjectArray',
                                  'ros_pgpt/srv/Query']
    assert info['torch'].startswith('2.13.0'), info.get('torch_error')


def test_info_text(capsys):
    from ros_pgpt.tools import info
    assert info.main(['--no-torch']) == 0
    out = capsys.readouterr().out
    assert f'ros_pgpt     {__version__}' in out
    assert 'ros_pgpt/srv/Query' in out and 'torch' not in out.split('packages')[0]


def test_python_dash_m_works():
    res = subprocess.run([sys.executable, '-m', 'ros_pgpt', '--version'], capture_output=True,
                         text=True, timeout=60, cwd=os.path.dirname(os.__file__))
    assert res.returncode == 0 and __version__ in res.stdout
