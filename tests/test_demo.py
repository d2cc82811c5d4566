"""``ros-pgpt demo`` end to end: node up, bag replayed, every query answered, overlays written."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ros_helpers import REPO_ROOT

pytestmark = [pytest.mark.ros, pytest.mark.slow]

BIN = Path(sys.prefix) / 'bin' / 'ros-pgpt'


def test_demo_runs_end_to_end(ros_env, tmp_path):
    exe = [str(BIN)] if BIN.exists() else [sys.executable, '-m', 'ros_pgpt']
    out = tmp_path / 'demo_output'
    res = subprocess.run(exe + ['demo', '--output', str(out), '--frames', '20'], env=ros_env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=600)
    text = res.stdout + res.stderr
    assert res.returncode == 0, text
    assert 'demo OK' in res.stdout
    for step in range(1, 8):
        assert f'[{step}/7]' in res.stdout
    assert 'service round trip: median' in res.stdout
    summary = json.loads((out / 'results.json').read_text())
    assert summary['ok'] and not summary['failures']
    kinds = {q['note'] for q in summary['queries']}
    assert {'single', 'plural', 'absent', '16 visual tokens', 'image sent inline'} <= kinds
    assert all(q['tokens'] == 16 for q in summary['queries'] if q['note'] == '16 visual tokens')
    assert summary['standing']['results'] >= 1
    for q in summary['queries']:
        assert Path(q['overlay']).is_file() and Path(q['overlay']).stat().st_size > 1000
    assert (out / 'node_overlay.png').is_file()
    assert (out / 'sample_bag' / 'ground_truth.json').is_file()
