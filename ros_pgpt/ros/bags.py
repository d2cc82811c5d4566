"""ROS 2 bags without rosbag2: make the sample camera bag, replay and record.

rosbag2 is not on PyPI; the pure-Python ``rosbags`` library reads and writes
ROS 2 bags (mcap and sqlite3) and rclpy publishes/subscribes raw CDR bytes,
which is exactly what a bag stores, so messages pass through untouched.

* ``make_sample_bag(out)``   ``ros-pgpt make-bag OUT``: a short 640x480 rgb8
  camera stream of one synthetic tabletop scene with slow camera jitter, plus
  ``OUT/ground_truth.json`` (objects, per-frame offsets, answerable queries);
* ``write_image_bag(out, images)``: any frames as a camera bag (the sample
  bag and the tests' moving-object bag are written with it);
* ``replay(bag)``            ``ros-pgpt replay BAG``: publish with the original
  timing (``--rate``, ``--loop``, ``--remap``) and each topic's recorded QoS,
  optionally with the bag's time on /clock (``--clock``);
* ``record(out, topics)``    ``ros-pgpt record OUT``: subscribe raw with a QoS
  that matches the topic's publishers (best effort when one of them is) and
  write, with the publishers' QoS in the bag's metadata; the ros_pgpt message
  types are registered from ``msg/*.msg`` so detections can be recorded and
  read back.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np

GROUND_TRUTH = 'ground_truth.json'
DEFAULT_TOPIC = '/camera/image_raw'
DEFAULT_RECORD_TOPICS = ('/ros_pgpt/detections',)
MSG_DIR = Path(__file__).resolve().parents[2] / 'msg'


# --------------------------------------------------------------------------- types
def _interface_texts() -> dict[str, str]:
    """ros_pgpt message definitions: from the source tree, else from the installed share/."""
    texts = {}
    candidates = [MSG_DIR]
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('ros_pgpt')) / 'msg')
    except Exception:  # noqa: BLE001 - no ament index (venv route): the source tree has them
        pass
    for folder in candidates:
        for path in sorted(folder.glob('*.msg')) if folder.is_dir() else ():
            texts.setdefault(f'ros_pgpt/msg/{path.stem}', path.read_text())
        if texts:
            break
    return texts


def typestore():
    """A rosbags typestore (ROS 2 Kilted) with the ros_pgpt message types registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for name, text in _interface_texts().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def msg_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    package, _, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), name)


# --------------------------------------------------------------------------- QoS
DEFAULT_DEPTH = 10  # keep-last depth where the bag or the graph says nothing


def qos_to_bag(profile):
    """An rclpy QoSProfile -> a rosbags Qos for a bag's metadata (history, depth, reliability, durability).

    Deadline, lifespan and liveliness are written as 0 (= the middleware's default): replay does not use them.
    """
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    default = QosTime(0, 0)
    # rosbags' enums carry rmw's values, as rclpy's do.
    return Qos(QosHistory(int(profile.history)), int(profile.depth), QosReliability(int(profile.reliability)),
               QosDurability(int(profile.durability)), default, default, QosLiveliness.SYSTEM_DEFAULT, default, False)


def matching_qos(profiles):
    """One QoSProfile that matches every given publisher profile (rclpy or rosbags, duck-typed).

    Best effort when any of them is (a reliable subscriber does not match a
    best-effort publisher), transient local only when all are, keep last with
    the largest depth; reliable, volatile, depth 10 when there are none.
    """
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    profiles = list(profiles)  # both kinds' policies are enums holding rmw's values
    best_effort = any(p.reliability.value == ReliabilityPolicy.BEST_EFFORT for p in profiles)
    latched = bool(profiles) and all(p.durability.value == DurabilityPolicy.TRANSIENT_LOCAL for p in profiles)
    depth = max([int(p.depth) for p in profiles if int(p.depth) > 0] or [DEFAULT_DEPTH])
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def describe_qos(profile) -> str:
    """'best_effort, depth 10' for an rclpy QoSProfile (durability named when transient local)."""
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    latched = ', transient_local' if profile.durability == DurabilityPolicy.TRANSIENT_LOCAL else ''
    reliability = 'best_effort' if profile.reliability == ReliabilityPolicy.BEST_EFFORT else 'reliable'
    return f'{reliability}{latched}, depth {profile.depth}'


# --------------------------------------------------------------------------- the sample bag
def _shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    import cv2

    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, m, (image.shape[1], image.shape[0]), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REPLICATE)


def _shift_box(box, dx, dy, width, height):
    x0, y0, x1, y1 = box
    return [float(min(max(x0 + dx, 0), width)), float(min(max(y0 + dy, 0), height)),
            float(min(max(x1 + dx, 0), width)), float(min(max(y1 + dy, 0), height))]


def jitter(index: int, fps: float, amplitude: float = 3.0) -> tuple[int, int]:
    """Slow camera jitter: a few pixels, one cycle every ~4 s."""
    t = index / fps
    return int(round(amplitude * math.sin(2 * math.pi * t / 4.0))), int(round(amplitude * 0.7 * math.sin(2 * math.pi * t / 3.0 + 1.0)))


def write_image_bag(out, images, *, fps: float, topic: str = DEFAULT_TOPIC, frame_id: str = 'camera',
                    compressed: bool = False, storage: str = 'mcap', start_sec: int = 1_700_000_000) -> tuple[str, str]:
    """Write RGB frames (an iterable of HxWx3 uint8) as a camera bag; returns its (topic, msgtype).

    Header stamps (= log times) at ``fps`` from ``start_sec``; raw rgb8 Images,
    or jpeg CompressedImages on ``topic``/compressed with ``compressed``.
    """
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ros_pgpt.ros import conversions

    if fps <= 0:
        raise ValueError('need fps > 0')
    out = Path(out)
    if out.exists():
        raise FileExistsError(f'{out} exists; remove it or choose another name')
    msgtype = 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image'
    if compressed and not topic.endswith('/compressed'):
        topic = topic.rstrip('/') + '/compressed'
    plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[storage]
    period_ns = int(round(1e9 / fps))
    start_ns = int(start_sec) * 1_000_000_000
    with Writer(out, version=9, storage_plugin=plugin) as writer:
        conn = writer.add_connection(topic, msgtype, typestore=typestore())
        for i, image in enumerate(images):
            stamp_ns = start_ns + i * period_ns
            if compressed:
                msg = conversions.rgb_to_compressed_msg(image, 'jpeg', quality=92)
            else:
                msg = conversions.rgb_to_image_msg(image, 'rgb8')
            msg.header.frame_id = frame_id
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            writer.write(conn, stamp_ns, serialize_message(msg))
    return topic, msgtype


def make_sample_bag(out, *, frames: int = 40, fps: float = 10.0, seed: int = 7, width: int = 640,
                    height: int = 480, topic: str = DEFAULT_TOPIC, frame_id: str = 'camera',
                    compressed: bool = False, storage: str = 'mcap', start_sec: int = 1_700_000_000) -> dict:
    """Write a camera bag of one synthetic scene with slow jitter; returns the ground truth dict."""
    from ros_pgpt.data import SceneGenerator

    if frames < 1 or fps <= 0:
        raise ValueError('need frames >= 1 and fps > 0')
    out = Path(out)
    sample = SceneGenerator(resolutions=[(width, height)], min_objects=3, max_objects=6).sample(seed, n_queries=16)
    scene = sample.scene
    offsets = [list(jitter(i, fps)) for i in range(frames)]
    topic, msgtype = write_image_bag(out, (_shift(scene.image, dx, dy) for dx, dy in offsets), fps=fps, topic=topic,
                                     frame_id=frame_id, compressed=compressed, storage=storage, start_sec=start_sec)
    period_ns = int(round(1e9 / fps))
    start_ns = int(start_sec) * 1_000_000_000
    last_dx, last_dy = offsets[-1]
    objects = [{'colour': o.colour, 'shape': o.shape, 'size': o.size, 'box': [float(v) for v in o.box],
                'box_last_frame': _shift_box(o.box, last_dx, last_dy, width, height)} for o in scene.objects]
    queries = []
    for q in sample.queries:
        if q.input_boxes or q.kind == 'describe':  # the Query service has no input boxes
            continue
        if any(q.prompt == seen['prompt'] for seen in queries):
            continue
        queries.append({'prompt': q.prompt, 'kind': q.kind, 'targets': list(q.targets),
                        'boxes_last_frame': [objects[t]['box_last_frame'] for t in q.targets]})
    truth = {
        'topic': topic, 'msgtype': msgtype, 'frame_id': frame_id, 'width': width, 'height': height,
        'frames': frames, 'fps': fps, 'seed': seed, 'storage': storage,
        'first_stamp_ns': start_ns, 'last_stamp_ns': start_ns + (frames - 1) * period_ns,
        'offsets': offsets, 'objects': objects, 'queries': queries,
        'note': 'boxes in source pixels (x0, y0, x1, y1), max exclusive; box = frame without offset, '
                'box_last_frame = in the last frame (offset applied)',
    }
    (out / GROUND_TRUTH).write_text(json.dumps(truth, indent=1))
    return truth


def load_ground_truth(bag) -> dict | None:
    path = Path(bag) / GROUND_TRUTH
    return json.loads(path.read_text()) if path.is_file() else None


def read_frames(bag, topic: str | None = None):
    """Yield (timestamp_ns, rclpy message) of image topics in a bag (for the demo/tests)."""
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        conns = [c for c in reader.connections if topic is None or c.topic == topic]
        for conn, t, raw in reader.messages(connections=conns):
            yield t, deserialize_message(bytes(raw), msg_class(conn.msgtype))


# --------------------------------------------------------------------------- replay
def _parse_remaps(pairs) -> dict[str, str]:
    remap = {}
    for pair in pairs or ():
        src, sep, dst = pair.partition(':=')
        if not sep or not src or not dst:
            raise ValueError(f'bad remap {pair!r}: use FROM:=TO')
        remap[src] = dst
    return remap


# How long a replay waits at its end for the subscribers to acknowledge what it published.
ACK_TIMEOUT_S = 5.0


class _Session:
    """A node on the caller's context, or on a context of its own whose SIGINT only sets ``stopping``.

    rclpy's own SIGINT handler shut the context down from its signal thread while the replay slept or
    published, which once aborted the process (SIGABRT) instead of ending the replay.
    """

    def __init__(self, context, name: str) -> None:
        import rclpy
        from rclpy.signals import SignalHandlerOptions

        self.own = context is None
        self.context = context or rclpy.Context()
        if self.own:
            rclpy.init(context=self.context, args=[], signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(f'{name}_{int(time.time() * 1000) % 100000}', context=self.context)
        self.stopping = False
        self._previous = signal.signal(signal.SIGINT, self._on_sigint) if self.own else None

    def _on_sigint(self, *_) -> None:
        self.stopping = True

    def close(self) -> None:
        import rclpy

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        # Destroy the node even after the context was shut down: a node left to the
        # interpreter's exit can stall the middleware's teardown past the caller's patience.
        self.node.destroy_node()
        if self.own:
            rclpy.try_shutdown(context=self.context)


def replay(bag, *, rate: float = 1.0, loop: bool = False, remap=None, topics=None,
           wait_subscribers: float = 10.0, clock_hz: float | None = None, reliability: str = 'bag',
           context=None, log=print, stop=None) -> int:
    """Publish a bag's messages with their original spacing (scaled by 1/rate). Returns messages sent.

    Each topic is published with the QoS its publishers had when it was
    recorded (``matching_qos`` of the bag's offered profiles; reliable, depth
    10 for a bag without them); ``reliability`` 'reliable' or 'best_effort'
    overrides the bag's. With ``clock_hz`` the bag's time is published on
    /clock (rosgraph_msgs/Clock) that many times a second and before each
    message, for nodes with use_sim_time.
    """
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosbags.rosbag2 import Reader

    if rate <= 0:
        raise ValueError('rate must be > 0')
    if clock_hz is not None and clock_hz <= 0:
        raise ValueError('the /clock rate must be > 0 Hz')
    if reliability not in REPLAY_RELIABILITIES:
        raise ValueError(f'reliability must be one of {", ".join(REPLAY_RELIABILITIES)}, not {reliability!r}')
    remap = dict(remap or {})
    session = _Session(context, 'ros_pgpt_replay')
    node, sent = session.node, 0

    def halted():
        return session.stopping or not session.context.ok() or (stop is not None and stop())
    try:
        with Reader(bag) as reader:
            conns = [c for c in reader.connections if not topics or c.topic in topics]
            if not conns:
                raise ValueError(f'{bag}: no messages on {topics or "any topic"}')
            pubs, qos_of = {}, {}
            for c in conns:
                name = remap.get(c.topic, c.topic)
                offered = [q for other in conns if remap.get(other.topic, other.topic) == name
                           for q in getattr(other.ext, 'offered_qos_profiles', ())]
                if name not in pubs:
                    qos = matching_qos(offered)
                    if reliability != 'bag':
                        qos.reliability = (ReliabilityPolicy.RELIABLE if reliability == 'reliable'
                                           else ReliabilityPolicy.BEST_EFFORT)
                    qos_of[name] = describe_qos(qos)
                    pubs[name] = node.create_publisher(msg_class(c.msgtype), name, qos)
            clock = None
            if clock_hz is not None:
                from rosgraph_msgs.msg import Clock
                # Reliable keep-last 1: matches both best-effort (rclpy's TimeSource) and reliable subscribers.
                clock = node.create_publisher(Clock, '/clock', QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
            waited = {**pubs, **({'/clock': clock} if clock is not None else {})}  # the bag's time is output too
            deadline = time.monotonic() + wait_subscribers
            while wait_subscribers > 0 and time.monotonic() < deadline and not halted():
                if all(p.get_subscription_count() > 0 for p in waited.values()):
                    break
                time.sleep(0.05)
            else:
                if wait_subscribers > 0:
                    lonely = [n for n, p in waited.items() if p.get_subscription_count() == 0]
                    if lonely:
                        log(f'replay: no subscriber on {", ".join(lonely)} after {wait_subscribers:g} s; publishing anyway')
            log(f'replay: {bag}: {sum(c.msgcount for c in conns)} messages on '
                f'{", ".join(f"{remap.get(c.topic, c.topic)} ({c.msgtype}; {qos_of[remap.get(c.topic, c.topic)]})" for c in conns)}'
                f' at rate {rate:g}{" (loop)" if loop else ""}{f", /clock at {clock_hz:g} Hz" if clock else ""}')
            while True:
                t_first = None
                wall0 = time.monotonic()
                next_tick = wall0
                for conn, t, raw in reader.messages(connections=conns):
                    if t_first is None:
                        t_first = t
                    due = wall0 + (t - t_first) / 1e9 / rate
                    while True:  # sleep in slices: SIGINT or stop() may halt the replay meanwhile
                        if halted():
                            return sent
                        now = time.monotonic()
                        if clock is not None and now >= next_tick:  # never past the next message: time runs forward
                            _publish_clock(clock, min(t, t_first + int((now - wall0) * rate * 1e9)))
                            next_tick = now + 1.0 / clock_hz
                        delay = due - now
                        if delay <= 0:
                            break
                        time.sleep(min(delay, 0.1, next_tick - now if clock is not None else 0.1))
                    if clock is not None:
                        _publish_clock(clock, t)
                    pubs[remap.get(conn.topic, conn.topic)].publish(bytes(raw))
                    sent += 1
                if not loop or halted():
                    break
            # Let reliable deliveries finish before the publishers go away: a fixed 0.3 s pause once lost the
            # bag's last frame on a loaded 2-core machine.
            for pub in pubs.values():
                if not halted() and not pub.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S)):
                    log(f'replay: {pub.topic_name}: not every message acknowledged after {ACK_TIMEOUT_S:g} s')
    finally:
        session.close()
    return sent


REPLAY_RELIABILITIES = ('bag', 'reliable', 'best_effort')
DEFAULT_CLOCK_HZ = 40.0  # rosbag2's `ros2 bag play --clock` default


def _publish_clock(publisher, stamp_ns: int) -> None:
    from rosgraph_msgs.msg import Clock

    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    publisher.publish(msg)


# --------------------------------------------------------------------------- record
RECORD_DEPTH = 50  # the recorder's queue: deep enough for a burst while the bag writes


def record(out, topics=DEFAULT_RECORD_TOPICS, *, duration: float | None = None, storage: str = 'mcap',
           discovery_timeout: float = 10.0, context=None, log=print, stop=None) -> dict[str, int]:
    """Record ``topics`` (raw CDR) into a new bag until ``duration`` s, SIGINT or ``stop()``."""
    from rclpy.executors import SingleThreadedExecutor
    from rosbags.rosbag2 import StoragePlugin, Writer

    out = Path(out)
    if out.exists():
        raise FileExistsError(f'{out} exists; remove it or choose another name')
    store = typestore()
    session = _Session(context, 'ros_pgpt_record')
    node = session.node
    executor = SingleThreadedExecutor(context=session.context)
    executor.add_node(node)
    counts = {t: 0 for t in topics}
    t_start = time.monotonic()
    try:
        # Discover each topic's type from the graph (the publishers must exist).
        types = {}
        deadline = time.monotonic() + discovery_timeout
        while len(types) < len(topics):
            graph = dict(node.get_topic_names_and_types())
            for t in topics:
                if t in graph and graph[t]:
                    types[t] = graph[t][0]
            if len(types) == len(topics) or time.monotonic() > deadline or session.stopping:
                break
            executor.spin_once(timeout_sec=0.05)
        missing = [t for t in topics if t not in types]
        if missing:
            log(f'record: no publisher seen for {", ".join(missing)} within {discovery_timeout:g} s; '
                f'not recording {"it" if len(missing) == 1 else "them"}')
        if not types:
            raise RuntimeError('nothing to record: none of the topics has a publisher')
        plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[storage]
        with Writer(out, version=9, storage_plugin=plugin) as writer:
            conns = {}
            qos_of = {}
            for t, msgtype in types.items():
                if msgtype not in store.fielddefs:
                    raise RuntimeError(f'record: type {msgtype} of {t} is unknown to the rosbags typestore')
                # Subscribe so that every publisher matches (a reliable subscription records nothing from a
                # best-effort camera), and keep what they offered for the replay.
                offered = [info.qos_profile for info in node.get_publishers_info_by_topic(t)]
                qos = matching_qos(offered)
                qos.depth = max(qos.depth, RECORD_DEPTH)
                qos_of[t] = describe_qos(qos)
                conns[t] = writer.add_connection(t, msgtype, typestore=store,
                                                 offered_qos_profiles=[qos_to_bag(q) for q in offered])

                def on_msg(raw, t=t):
                    writer.write(conns[t], time.time_ns(), raw)
                    counts[t] += 1
                node.create_subscription(msg_class(msgtype), t, on_msg, qos, raw=True)
            log(f'record: {out}: recording {", ".join(f"{t} ({m}; {qos_of[t]})" for t, m in types.items())}'
                f'{f" for {duration:g} s" if duration else " until Ctrl-C"}')
            while not session.stopping and not (stop is not None and stop()):
                if duration is not None and time.monotonic() - t_start >= duration:
                    break
                executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown(timeout_sec=1.0)
        session.close()
    log(f'record: wrote {sum(counts.values())} messages to {out} '
        f'({", ".join(f"{t}: {n}" for t, n in counts.items())})')
    return counts


# --------------------------------------------------------------------------- commands
def make_bag_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='ros-pgpt make-bag', description='write the sample camera bag')
    parser.add_argument('out', help='bag directory to create')
    parser.add_argument('--frames', type=int, default=40, help='number of frames (default 40)')
    parser.add_argument('--fps', type=float, default=10.0, help='frame rate of the header stamps (default 10)')
    parser.add_argument('--seed', type=int, default=7, help='scene seed (default 7)')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--topic', default=DEFAULT_TOPIC)
    parser.add_argument('--compressed', action='store_true', help='jpeg CompressedImage on TOPIC/compressed')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    args = parser.parse_args(argv)
    try:
        truth = make_sample_bag(args.out, frames=args.frames, fps=args.fps, seed=args.seed, width=args.width,
                                height=args.height, topic=args.topic, compressed=args.compressed,
                                storage=args.storage)
    except (ValueError, FileExistsError) as exc:
        print(f'ros-pgpt make-bag: {exc}', file=sys.stderr)
        return 1
    print(f'wrote {args.out}: {truth["frames"]} frames {truth["width"]}x{truth["height"]} on {truth["topic"]} '
          f'at {truth["fps"]:g} Hz, {len(truth["objects"])} objects, {len(truth["queries"])} queries in '
          f'{Path(args.out) / GROUND_TRUTH}')
    return 0


def replay_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='ros-pgpt replay', description='publish a ROS 2 bag with its timing')
    parser.add_argument('bag', help='bag directory (mcap or sqlite3)')
    parser.add_argument('--rate', type=float, default=1.0, help='playback speed factor (default 1)')
    parser.add_argument('--loop', action='store_true', help='start over at the end (until Ctrl-C)')
    parser.add_argument('--remap', nargs='+', action='extend', default=[], metavar='FROM:=TO',
                        help='rename topics (repeatable)')
    parser.add_argument('--topics', nargs='+', help='only these topics (bag names)')
    parser.add_argument('--wait-subscribers', type=float, default=10.0, metavar='S',
                        help='wait up to S s for a subscriber on every topic before starting (default 10)')
    parser.add_argument('--clock', type=float, nargs='?', const=DEFAULT_CLOCK_HZ, metavar='HZ',
                        help=f'publish the bag\'s time on /clock, HZ times a second (default {DEFAULT_CLOCK_HZ:g}) '
                             f'and before each message (for nodes with use_sim_time)')
    parser.add_argument('--qos-reliability', choices=REPLAY_RELIABILITIES, default='bag',
                        help='publish reliable or best_effort instead of the recorded QoS (default: the bag\'s; '
                             'reliable for bags without QoS)')
    args = parser.parse_args(argv)
    try:
        remap = _parse_remaps(args.remap)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        sent = replay(args.bag, rate=args.rate, loop=args.loop, remap=remap, topics=args.topics,
                      wait_subscribers=args.wait_subscribers, clock_hz=args.clock, reliability=args.qos_reliability)
    except KeyboardInterrupt:
        print('replay: interrupted')
        return 0
    except Exception as exc:  # noqa: BLE001 - a clear one-line error for the command line
        print(f'ros-pgpt replay: {type(exc).__name__}: {exc}', file=sys.stderr)
        return 1
    print(f'replay: published {sent} messages')
    return 0


def record_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='ros-pgpt record', description='record topics into a ROS 2 bag')
    parser.add_argument('out', help='bag directory to create')
    parser.add_argument('--topics', nargs='+', default=list(DEFAULT_RECORD_TOPICS),
                        help=f'topics (default {" ".join(DEFAULT_RECORD_TOPICS)})')
    parser.add_argument('--duration', type=float, metavar='S', help='stop after S seconds (default: Ctrl-C)')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    parser.add_argument('--discovery-timeout', type=float, default=10.0, metavar='S',
                        help='wait up to S s for the topics to appear (default 10)')
    args = parser.parse_args(argv)
    try:
        counts = record(args.out, args.topics, duration=args.duration, storage=args.storage,
                        discovery_timeout=args.discovery_timeout)
    except (RuntimeError, FileExistsError) as exc:
        print(f'ros-pgpt record: {exc}', file=sys.stderr)
        return 1
    return 0 if counts else 1
