"""Bags without rosbag2: the sample camera bag, replay and record (no model needed)."""
import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from ros_helpers import REPO_ROOT, RosProcess, unique_name, wait_for

pytestmark = pytest.mark.ros


def _read(bag):
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader

    from ros_pgpt.ros.bags import msg_class

    with Reader(bag) as reader:
        return [(c.topic, c.msgtype, t, deserialize_message(bytes(raw), msg_class(c.msgtype)))
                for c, t, raw in reader.messages()]


def replay_while_spinning(argv, env, executor, spin_s: float) -> str:
    """Run ``ros-pgpt replay`` while ``executor`` takes what it publishes; asserts exit 0, returns its output."""
    with RosProcess(argv, env, cwd=REPO_ROOT) as proc:
        deadline = time.monotonic() + 60
        while proc.alive() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=spin_s)
        assert proc.proc.wait(10) == 0, proc.output()
        return proc.output()


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_make_sample_bag(tmp_path, storage):
    from ros_pgpt.ros.bags import GROUND_TRUTH, make_sample_bag
    from ros_pgpt.ros.conversions import image_msg_to_rgb

    bag = tmp_path / 'cam'
    truth = make_sample_bag(bag, frames=12, fps=12.5, seed=4, storage=storage)
    msgs = _read(bag)
    assert len(msgs) == 12
    assert {m[0] for m in msgs} == {'/camera/image_raw'} and {m[1] for m in msgs} == {'sensor_msgs/msg/Image'}
    stamps = [m[3].header.stamp.sec * 10**9 + m[3].header.stamp.nanosec for m in msgs]
    assert stamps == [m[2] for m in msgs], 'log time = header stamp'
    assert np.allclose(np.diff(stamps), 80_000_000)  # 12.5 Hz
    assert stamps[-1] == truth['last_stamp_ns']
    first, last = image_msg_to_rgb(msgs[0][3]), image_msg_to_rgb(msgs[-1][3])
    assert first.shape == (480, 640, 3) and msgs[0][3].encoding == 'rgb8' and msgs[0][3].header.frame_id == 'camera'
    assert not np.array_equal(first, last), 'the camera jitters'
    on_disk = json.loads((bag / GROUND_TRUTH).read_text())
    assert on_disk == json.loads(json.dumps(truth))
    assert {q['kind'] for q in truth['queries']} >= {'single', 'plural'}
    assert all('<box>' not in q['prompt'] for q in truth['queries'])
    # ground-truth boxes of the last frame hold their object's colour
    for obj in truth['objects']:
        x0, y0, x1, y1 = (int(v) for v in obj['box_last_frame'])
        assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
    for q in truth['queries']:
        assert len(q['boxes_last_frame']) == len(q['targets'])


def test_make_bag_command(tmp_path):
    out = tmp_path / 'cli_bag'
    cmd = [sys.executable, '-m', 'ros_pgpt', 'make-bag', str(out), '--frames', '3', '--fps', '5',
           '--width', '320', '--height', '240', '--compressed']
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert '3 frames 320x240' in done.stdout
    msgs = _read(out)
    assert [m[0] for m in msgs] == ['/camera/image_raw/compressed'] * 3
    assert msgs[0][3].format == 'jpeg' and bytes(msgs[0][3].data[:2]) == b'\xff\xd8'
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert again.returncode == 1 and 'exists' in again.stderr


def _subscribe(node, topic, sink):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    return node.create_subscription(Image, topic, lambda m: sink.append((time.monotonic(), m)),
                                    QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))


def test_replay_keeps_timing_and_remaps(tmp_path, ros_env, ros_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ros_pgpt.ros.bags import make_sample_bag

    bag = tmp_path / 'cam'
    make_sample_bag(bag, frames=10, fps=20.0, width=160, height=120)
    topic = unique_name('replayed')
    node = rclpy.create_node('replay_sink', context=ros_context)
    got = []
    _subscribe(node, topic, got)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    try:
        argv = ['-m', 'ros_pgpt', 'replay', str(bag), '--remap', f'/camera/image_raw:={topic}', '--rate', '0.5']
        assert 'published 10 messages' in replay_while_spinning(argv, ros_env, executor, 0.02)
        end = time.monotonic() + 2
        while len(got) < 10 and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.02)
        assert len(got) == 10
        stamps = [m.header.stamp.nanosec for _, m in got]
        assert stamps == sorted(stamps)
        span = got[-1][0] - got[0][0]
        # 9 gaps of 50 ms at rate 0.5 -> 0.9 s
        assert 0.6 < span < 2.5, span
    finally:
        executor.shutdown()
        node.destroy_node()


def test_replay_loop_in_process(tmp_path, ros_context):
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ros_pgpt.ros.bags import make_sample_bag, replay

    bag = tmp_path / 'cam'
    make_sample_bag(bag, frames=3, fps=30.0, width=160, height=120, storage='sqlite3')
    topic = unique_name('looped')
    node = rclpy.create_node('loop_sink', context=ros_context)
    got = []
    _subscribe(node, topic, got)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    stop = threading.Event()
    sent = []
    thread = threading.Thread(target=lambda: sent.append(replay(
        bag, loop=True, remap={'/camera/image_raw': topic}, context=ros_context, log=lambda *_: None,
        stop=lambda: stop.is_set() or len(got) >= 7)))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(got) < 7 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.02)
        assert len(got) >= 7, 'a 3-frame bag looped must deliver more than 3 frames'
    finally:
        stop.set()
        thread.join(10)
        executor.shutdown()
        node.destroy_node()
    assert sent and sent[0] >= 7


def test_record_detections(tmp_path, ros_env, ros_context):
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from ros_pgpt.ros.bags import typestore
    from ros_pgpt.msg import GroundedObject, GroundedObjectArray

    topic = unique_name('detections')
    node = rclpy.create_node('record_source', context=ros_context)
    pub = node.create_publisher(GroundedObjectArray, topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    out = tmp_path / 'rec'
    try:
        argv = ['-m', 'ros_pgpt', 'record', str(out), '--topics', topic, '--duration', '60']
        with RosProcess(argv, ros_env, cwd=REPO_ROOT) as proc:
            proc.wait_for_output('recording', 60)
            wait_for(lambda: pub.get_subscription_count() > 0, 20, message='recorder subscribed')
            for i in range(5):
                msg = GroundedObjectArray(prompt=f'prompt {i}', answer='<obj>', visual_tokens=16,
                                          objects=[GroundedObject(phrase='red star', score=0.5, x_min=1.0, x_max=float(i + 2))])
                msg.header.frame_id = 'cam'
                pub.publish(msg)
            time.sleep(1.0)
            code = proc.stop()  # SIGINT closes the bag cleanly
            log = proc.log_path.read_text()
            assert code == 0, log
            assert 'wrote 5 messages' in log, log
    finally:
        node.destroy_node()
    from rosbags.rosbag2 import Reader

    store = typestore()
    with Reader(out) as reader:
        rows = [(c.msgtype, store.deserialize_cdr(raw, c.msgtype)) for c, _, raw in reader.messages()]
    assert [r[0] for r in rows] == ['ros_pgpt/msg/GroundedObjectArray'] * 5
    assert [r[1].prompt for r in rows] == [f'prompt {i}' for i in range(5)]
    assert rows[4][1].objects[0].x_max == 6.0 and rows[0][1].objects[0].phrase == 'red star'


def test_record_without_publishers_fails_clearly(tmp_path, ros_env):
    done = subprocess.run([sys.executable, '-m', 'ros_pgpt', 'record', str(tmp_path / 'r'), '--topics',
                           unique_name('nobody'), '--discovery-timeout', '1'],
                          capture_output=True, text=True, timeout=60, env=ros_env, cwd=REPO_ROOT)
    assert done.returncode == 1
    assert 'no publisher' in done.stdout + done.stderr


def test_replay_loop_stops_on_sigint(tmp_path, ros_env):
    from ros_pgpt.ros.bags import make_sample_bag

    bag = tmp_path / 'cam'
    make_sample_bag(bag, frames=3, fps=10.0, width=160, height=120)
    argv = ['-m', 'ros_pgpt', 'replay', str(bag), '--loop', '--wait-subscribers', '0',
            '--remap', f'/camera/image_raw:={unique_name("nobody")}']
    with RosProcess(argv, ros_env, cwd=REPO_ROOT) as proc:
        proc.wait_for_output('(loop)', 60)
        time.sleep(0.5)
        assert proc.alive()
        t0 = time.monotonic()
        code = proc.stop(timeout=10)
        assert code == 0 and time.monotonic() - t0 < 5, proc.log_path.read_text()


def test_record_matches_a_best_effort_publisher_and_replay_keeps_its_qos(tmp_path, ros_env, ros_context):
    """A best-effort camera is recorded (a reliable recorder would not match it), its QoS goes into the bag,
    and the replay publishes best effort again."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosbags.interfaces import QosReliability
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import Image

    from ros_pgpt.ros import conversions
    from ros_pgpt.ros.bags import replay

    topic = unique_name('best_effort_cam')
    best_effort = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    node = rclpy.create_node('best_effort_camera', context=ros_context)
    pub = node.create_publisher(Image, topic, best_effort)
    out = tmp_path / 'rec'
    frame = conversions.rgb_to_image_msg(np.zeros((24, 32, 3), np.uint8))  # small: best effort over loopback keeps it
    try:
        argv = ['-m', 'ros_pgpt', 'record', str(out), '--topics', topic, '--duration', '60']
        with RosProcess(argv, ros_env, cwd=REPO_ROOT) as proc:
            proc.wait_for_output('recording', 60)
            assert 'best_effort' in proc.output()
            wait_for(lambda: pub.get_subscription_count() > 0, 20, message='recorder subscribed')
            for i in range(10):
                frame.header.stamp.sec = i
                pub.publish(frame)
                time.sleep(0.05)
            time.sleep(1.0)
            assert proc.stop() == 0, proc.log_path.read_text()
        with Reader(out) as reader:
            (conn,) = reader.connections
            count = sum(1 for _ in reader.messages())
            offered = conn.ext.offered_qos_profiles
        assert count >= 8, f'a best-effort camera is recorded ({count} of 10 frames)'
        assert [q.reliability for q in offered] == [QosReliability.BEST_EFFORT]

        replayed = unique_name('replayed_cam')
        got = []
        node.create_subscription(Image, replayed, got.append, best_effort)
        executor = SingleThreadedExecutor(context=ros_context)
        executor.add_node(node)
        seen_qos = []
        done = threading.Event()

        def spin_and_look():  # the replay runs on this thread; its publisher's QoS is visible in the graph
            while not done.is_set():
                executor.spin_once(timeout_sec=0.02)
                seen_qos.extend(i.qos_profile.reliability for i in node.get_publishers_info_by_topic(replayed))
        spinner = threading.Thread(target=spin_and_look)
        spinner.start()
        try:
            sent = replay(out, rate=2.0, remap={topic: replayed}, context=ros_context, log=lambda *_: None)
        finally:
            time.sleep(0.5)
            done.set()
            spinner.join(10)
            executor.shutdown()
        assert sent == count and got, 'the best-effort replay reaches a best-effort subscriber'
        assert seen_qos and set(seen_qos) == {ReliabilityPolicy.BEST_EFFORT}
    finally:
        node.destroy_node()


def test_replay_publishes_the_bag_time_on_clock(tmp_path, ros_env, ros_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    from ros_pgpt.ros.bags import make_sample_bag

    bag = tmp_path / 'cam'
    truth = make_sample_bag(bag, frames=10, fps=10.0, width=160, height=120)
    node = rclpy.create_node('clock_sink', context=ros_context)
    ticks = []
    # rclpy's own /clock subscription (use_sim_time) is best effort, depth 1
    node.create_subscription(Clock, '/clock', lambda m: ticks.append(m.clock.sec * 10**9 + m.clock.nanosec),
                             QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT))
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    try:
        # nobody subscribes to the image topic: replay waits the 5 s, long enough for /clock to match
        argv = ['-m', 'ros_pgpt', 'replay', str(bag), '--clock', '50', '--wait-subscribers', '5',
                '--remap', f'/camera/image_raw:={unique_name("nobody")}']
        time.sleep(0.5)
        assert '/clock at 50 Hz' in replay_while_spinning(argv, ros_env, executor, 0.01)
        executor.spin_once(timeout_sec=0.2)
    finally:
        executor.shutdown()
        node.destroy_node()
    first, last = truth['first_stamp_ns'], truth['last_stamp_ns']
    assert len(ticks) >= 20, f'0.9 s of bag at 50 Hz: {len(ticks)} clock messages'
    assert all(first <= t <= last for t in ticks), 'the clock is the bag\'s time'
    # time runs forward to the bag's end (the very last tick may go out as the process exits, unseen)
    assert ticks == sorted(ticks) and last - ticks[-1] <= 100_000_000
