"""``ros-pgpt soak`` for 30 s: the node under a robot's load keeps every promise of docs/NODE.md.

Four clients query the latest frame back to back (half with masks) while a camera publishes at
30 Hz and a standing prompt runs at 5 Hz; then SIGINT. The 10-minute figures are in docs/NODE.md.
"""
import json
import subprocess
import sys

import pytest

from ros_helpers import REPO_ROOT

pytestmark = [pytest.mark.ros, pytest.mark.slow]

RATE = 5.0


def soak(tmp_path, ros_env, name, *args):
    out = tmp_path / name
    res = subprocess.run([sys.executable, '-m', 'ros_pgpt', 'soak', '--rate', str(RATE), '--out', str(out), *args],
                         env=ros_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((out / 'soak.json').read_text())
    return report, res.stdout + (out / 'node.log').read_text()[-3000:]


def test_four_clients_and_a_standing_prompt(tmp_path, ros_env):
    report, text = soak(tmp_path, ros_env, 'four', '--duration', '30', '--clients', '4')
    assert 'backend onnxruntime' in report['backend_line'], text
    assert report['ok'] > 50, text
    assert report['lost'] == 0, text
    assert report['failures'] == {}, text  # no stale-frame refusal while the camera publishes
    assert report['busy_fraction'] <= 0.2, text
    assert report['standing']['fraction_of_rate'] >= 0.8, text
    assert report['round_trip_ms']['p99'] <= 3 * report['round_trip_ms']['p50'], text
    assert report['exit'] == {'code': 0, 'seconds_after_sigint': report['exit']['seconds_after_sigint'],
                              'error_lines': []}, text
    assert report['exit']['seconds_after_sigint'] < 5.0, text
    assert report['rss_mb']['samples'] and (tmp_path / 'four' / 'rss.png').stat().st_size > 1000


def test_more_clients_than_the_queue_get_busy_at_once(tmp_path, ros_env):
    """queue_size 2 and 4 clients: some calls are answered "busy", at once, none is lost, and the standing
    prompt keeps running."""
    report, text = soak(tmp_path, ros_env, 'busy', '--duration', '20', '--clients', '4', '--queue-size', '2')
    assert report['busy'] > 0 and report['ok'] > 20, text
    assert report['lost'] == 0 and report['failures'] == {}, text
    assert report['busy_round_trip_ms']['p50'] < 50.0, text
    assert report['standing']['results'] > 0, text
    if report['standing']['fraction_of_rate'] < 0.8:
        pytest.xfail(f"known shortfall (docs/NODE.md, Under load): under a flood of busy retries the standing "
                     f"prompt got {report['standing']['fraction_of_rate']:.0%} of its rate, not 80 %")
