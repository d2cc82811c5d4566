"""launch/ and config/: what can be checked without launch/launch_ros (not on PyPI)."""
import ast
import importlib.util
import subprocess
import sys
import types

import pytest
import yaml

from ros_helpers import REPO_ROOT

LAUNCH = REPO_ROOT / 'launch'
CONFIG = REPO_ROOT / 'config' / 'perception.yaml'


def test_params_yaml_matches_declared_parameters():
    from ros_pgpt.ros.params import BY_NAME

    data = yaml.safe_load(CONFIG.read_text())
    params = data['/**']['ros__parameters']
    assert params, 'no parameters'
    py = {'bool': bool, 'int': int, 'double': float, 'string': str, 'string_array': list}
    for name, value in params.items():
        assert name in BY_NAME, f'{CONFIG.name}: {name} is not a node parameter'
        expected = py[BY_NAME[name].kind]
        assert isinstance(value, expected) and not (expected is int and isinstance(value, bool)), (name, value)
        if BY_NAME[name].low is not None:
            assert BY_NAME[name].low <= value <= BY_NAME[name].high, name
    for name in ('checkpoint', 'backend', 'input', 'visual_tokens', 'masks', 'score_threshold', 'max_image_age',
                 'rate', 'queue_size', 'max_prompt_chars', 'autostart', 'qos_reliability', 'qos_depth'):
        assert name in params, f'{name} missing from {CONFIG.name}'


def test_cmake_installs_launch_config_and_entry_point():
    text = (REPO_ROOT / 'CMakeLists.txt').read_text()
    assert 'install(DIRECTORY launch config' in text
    assert 'scripts/perception_node' in text


def test_perception_node_script_runs_the_node_main():
    res = subprocess.run([sys.executable, str(REPO_ROOT / 'scripts' / 'perception_node'), '--help'],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert 'ros-pgpt node' in res.stdout and 'standing_prompts' in res.stdout
    bad = subprocess.run([sys.executable, '-m', 'ros_pgpt', 'node', '--bogus'], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and '--ros-args' in bad.stderr


class _Recorder:
    """Stands in for every launch/launch_ros class: records its arguments."""
    made = []

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        _Recorder.made.append(self)


def _fake_launch_modules(monkeypatch):
    names = {
        'launch': ['LaunchDescription'],
        'launch.actions': ['DeclareLaunchArgument', 'ExecuteProcess', 'IncludeLaunchDescription'],
        'launch.conditions': ['IfCondition', 'UnlessCondition'],
        'launch.launch_description_sources': ['PythonLaunchDescriptionSource'],
        'launch.substitutions': ['LaunchConfiguration', 'PathJoinSubstitution', 'FindExecutable'],
        'launch_ros': [],
        'launch_ros.actions': ['Node'],
        'launch_ros.substitutions': ['FindPackageShare'],
    }
    for module, classes in names.items():
        mod = types.ModuleType(module)
        for cls in classes:
            setattr(mod, cls, type(cls, (_Recorder,), {}))
        monkeypatch.setitem(sys.modules, module, mod)


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem.replace('.', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


@pytest.mark.parametrize('name', ['perception.launch.py', 'replay.launch.py'])
def test_launch_file_structure(monkeypatch, name):
    ast.parse((LAUNCH / name).read_text())
    _fake_launch_modules(monkeypatch)
    _Recorder.made = []
    description = _load(LAUNCH / name)
    assert type(description).__name__ == 'LaunchDescription'
    made = {type(r).__name__: r for r in _Recorder.made}
    if name == 'perception.launch.py':
        node = made['Node']
        assert node.kwargs['package'] == 'ros_pgpt' and node.kwargs['executable'] == 'perception_node'
        assert node.kwargs['name'] == 'ros_pgpt'
        assert [r[0] for r in node.kwargs['remappings']] == ['image', 'image/compressed']
        paths = [r for r in _Recorder.made if type(r).__name__ == 'PathJoinSubstitution']
        assert any(p.args[0][1:] == ['config', 'perception.yaml'] for p in paths)
        declared = {r.args[0] for r in _Recorder.made if type(r).__name__ == 'DeclareLaunchArgument'}
        assert {'params_file', 'camera_topic', 'input', 'namespace'} <= declared
    else:
        procs = [r for r in _Recorder.made if type(r).__name__ == 'ExecuteProcess']
        assert procs and all('replay' in r.kwargs['cmd'] for r in procs)
        assert 'IncludeLaunchDescription' in made
