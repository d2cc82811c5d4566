"""``ros-pgpt soak``: the node under a robot's load, measured from outside.

Starts the perception node the way the launch file does (``config/perception.yaml``
plus overrides) in a private ROS world, then for ``--duration`` seconds:

* a camera publishes 640x480 rgb8 frames at ``--camera-hz`` (a few generated
  scenes in turn, stamped with the wall clock);
* ``--clients`` client processes call ``~/query`` back to back on the latest
  frame (every other client asks for masks), each with its own rclpy context;
* the node grounds ``--standing`` at ``--rate`` Hz as a standing prompt;
* the node's RSS is sampled every ``--rss-period`` seconds.

Optional throughput phases follow (``--throughput-tokens 16,64``): every client
at one visual-token count for ``--phase-seconds`` each. Then the node gets
SIGINT and the tool times its exit and reads its log for error lines.

Writes ``OUT/soak.json`` (every number below), ``OUT/summary.txt``, ``OUT/rss.png``
and ``OUT/node.log``: calls, ok, busy, other failures by message, lost calls
(no answer within ``--call-timeout``), round trip and node ``total_ms``
p50/p90/p99, standing results per second against the rate, RSS over time
(minute medians: growth from minute 2 and spread over the last five minutes; raw spread and
slope beside them), queries per second,
exit code and seconds after SIGINT.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

STANDING_PROMPT = 'where is the red object?'
CLIENT_PROMPTS = ('point to every shape', 'where is the blue object?', 'all the green objects',
                  'the large object')
ERROR_LINE = re.compile(r'\[ERROR\]|Traceback|RCLError|Exception')


def _percentiles(values) -> dict:
    if not values:
        return {'n': 0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {'n': len(values), 'p50': round(float(p50), 2), 'p90': round(float(p90), 2),
            'p99': round(float(p99), 2), 'max': round(float(max(values)), 2)}


# ---------------------------------------------------------------------------- clients (own processes)
def _client_main(index: int, service: str, ready, schedules, masks: bool, call_timeout: float, out: str) -> None:
    """Say ``ready`` once the service is seen, take the schedule [(start, end, tokens)], call the service
    back to back through it; one JSON line a call."""
    from ros_pgpt.ros.query import QueryClient, build_request

    client = QueryClient(service, node_name=f'soak_client_{index}')
    try:
        client.wait(120.0)
        ready.put(index)
        schedule = schedules.get()
        with open(out, 'w') as log:
            for start, end, tokens in schedule:
                while time.time() < start:
                    time.sleep(0.01)
                n = 0
                while time.time() < end:
                    prompt = CLIENT_PROMPTS[(index + n) % len(CLIENT_PROMPTS)]
                    n += 1
                    sent = time.time()
                    response, ms = client.call(build_request(prompt, masks=masks, tokens=tokens), call_timeout)
                    record = {'t': sent, 'tokens': tokens, 'rtt_ms': ms, 'lost': response is None}
                    if response is not None:
                        record.update(ok=response.success, message=response.message,
                                      node_ms=response.result.total_ms if response.success else None)
                    log.write(json.dumps(record) + '\n')
    finally:
        client.close()


# ---------------------------------------------------------------------------- camera + standing results
class Camera:
    """Publishes frames at a fixed rate on its own thread; counts the standing prompt's results."""

    def __init__(self, context, topic: str, detections_topic: str, hz: float, standing: str):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from ros_pgpt.data import SceneGenerator
        from ros_pgpt.msg import GroundedObjectArray
        from ros_pgpt.ros.conversions import rgb_to_image_msg

        self.node = rclpy.create_node(f'soak_camera_{os.getpid()}', context=context)
        reliable = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.publisher = self.node.create_publisher(Image, topic, reliable)
        self.standing_times: list[float] = []
        self.node.create_subscription(GroundedObjectArray, detections_topic, self._on_detections,
                                      QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        generator = SceneGenerator(resolutions=[(640, 480)])
        self.frames = [rgb_to_image_msg(generator.sample(seed).scene.image, 'rgb8') for seed in range(4)]
        for frame in self.frames:
            frame.header.frame_id = 'soak_camera'
        self.period, self.standing, self.published, self.publish_failures = 1.0 / hz, standing, 0, 0
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._publish, daemon=True),
                         threading.Thread(target=self._spin, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _on_detections(self, msg):
        if msg.standing:  # one message per frame holds every standing prompt
            self.standing_times.append(time.time())

    def _publish(self):
        from rclpy.impl.implementation_singleton import rclpy_implementation

        next_t = time.monotonic()
        while not self._stop.is_set():
            msg = self.frames[self.published % len(self.frames)]
            now = time.time()
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
            try:
                self.publisher.publish(msg)
                self.published += 1
            except rclpy_implementation.RCLError:  # a reliable write the node did not acknowledge in time: a camera keeps going
                self.publish_failures += 1
            next_t += self.period
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def _spin(self):
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(2.0)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()


# ---------------------------------------------------------------------------- the run
def run_soak(args) -> dict:
    import psutil
    import rclpy

    from ros_pgpt.ros.launcher import isolated_env, node_command, write_params_file

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ros_home = Path(tempfile.mkdtemp(prefix='ros_pgpt_soak_'))
    env = isolated_env(ros_home, domain_id=args.domain_id)
    params = {'standing_prompts': [args.standing], 'rate': args.rate, 'masks': True}
    if args.queue_size:
        params['queue_size'] = args.queue_size
    if args.backend:
        params['backend'] = args.backend
    argv = node_command(params_files=[write_params_file(ros_home / 'soak_params.yaml', params)],
                        remaps={'image': '/camera/image_raw'})
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_HOME',
                                           'ROS_LOG_DIR')})
    log_path = out / 'node.log'
    log_file = open(log_path, 'w')
    node_proc = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    report: dict = {'config': {k: v for k, v in vars(args).items()}, 'node_argv': argv[1:]}
    context = rclpy.Context()
    rclpy.init(context=context, args=[])
    camera = None
    try:
        deadline = time.monotonic() + args.start_timeout
        while 'ready: serving' not in log_path.read_text():
            if node_proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f'the node did not come up (exit {node_proc.poll()}):\n'
                                   + log_path.read_text()[-3000:])
            time.sleep(0.2)
        report['backend_line'] = next((line for line in log_path.read_text().splitlines()
                                       if 'configured in' in line), '')
        camera = Camera(context, '/camera/image_raw', '/ros_pgpt/detections', args.camera_hz, args.standing)
        time.sleep(args.warmup)  # discovery, first frames, the standing prompt's first runs

        spawn = multiprocessing.get_context('spawn')
        ready, schedules, clients = spawn.Queue(), spawn.Queue(), []
        for i in range(args.clients):
            path = out / f'client_{i}.jsonl'
            proc = spawn.Process(target=_client_main, daemon=True, args=(
                i, '/ros_pgpt/query', ready, schedules, i % 2 == 0, args.call_timeout, str(path)))
            proc.start()
            clients.append((proc, path))
        for _ in clients:  # a loaded machine takes many seconds to start a client process
            ready.get(timeout=args.start_timeout)
        start = time.time() + 0.5
        main_end = start + args.duration
        schedule = [(start, main_end, args.tokens)]
        for i, tokens in enumerate(args.throughput_tokens):
            schedule.append((main_end + i * args.phase_seconds, main_end + (i + 1) * args.phase_seconds, tokens))
        end = schedule[-1][1]
        for _ in clients:
            schedules.put(schedule)

        node_ps = psutil.Process(node_proc.pid)
        rss = []
        while time.time() < end + args.call_timeout:
            rss.append((time.time() - start, node_ps.memory_info().rss / 2**20))
            if time.time() > end and not any(p.is_alive() for p, _ in clients):
                break
            time.sleep(args.rss_period)
        for proc, _ in clients:
            proc.join(args.call_timeout)
        standing_times = list(camera.standing_times)
        report['camera'] = {'published': camera.published, 'publish_failures': camera.publish_failures,
                            'hz': args.camera_hz}
    finally:
        if camera is not None:
            camera.close()
        rclpy.try_shutdown(context=context)
        t0 = time.monotonic()
        node_proc.send_signal(signal.SIGINT)
        try:
            code = node_proc.wait(args.exit_timeout)
        except subprocess.TimeoutExpired:
            node_proc.kill()
            code = node_proc.wait()
        exit_s = time.monotonic() - t0
        log_file.close()

    calls = [json.loads(line) for _, path in clients for line in path.read_text().splitlines()]
    report.update(_summarise(calls, schedule, standing_times, rss, args))
    log = log_path.read_text().splitlines()
    report['exit'] = {'code': code, 'seconds_after_sigint': round(exit_s, 2),
                      'error_lines': [line for line in log if ERROR_LINE.search(line)][:20]}
    _plot(rss, out / 'rss.png', args)
    (out / 'soak.json').write_text(json.dumps(report, indent=2))
    (out / 'summary.txt').write_text(format_summary(report))
    return report


def _summarise(calls, schedule, standing_times, rss, args) -> dict:
    start, main_end, _ = schedule[0]
    main = [c for c in calls if c['t'] < main_end]
    answered = [c for c in main if not c['lost']]
    ok = [c for c in answered if c['ok']]
    busy = [c for c in answered if not c['ok'] and c['message'].startswith('busy')]
    failures: dict[str, int] = {}
    for c in answered:
        if not c['ok'] and not c['message'].startswith('busy'):
            key = re.sub(r'[\d.]+', 'N', c['message'])[:120]
            failures[key] = failures.get(key, 0) + 1
    standing = [t for t in standing_times if start <= t < main_end]
    summary = {
        'calls': len(main), 'ok': len(ok), 'busy': len(busy), 'failures': failures,
        'lost': sum(c['lost'] for c in main),
        'busy_fraction': round(len(busy) / max(1, len(answered)), 4),
        'round_trip_ms': _percentiles([c['rtt_ms'] for c in ok]),
        'node_total_ms': _percentiles([c['node_ms'] for c in ok]),
        'busy_round_trip_ms': _percentiles([c['rtt_ms'] for c in busy]),
        'queries_per_s': round(len(ok) / args.duration, 2),
        'standing': {'rate': args.rate, 'results': len(standing),
                     'results_per_s': round(len(standing) / args.duration, 3),
                     'fraction_of_rate': round(len(standing) / args.duration / args.rate, 3)},
    }
    summary['round_trip_p99_over_p50'] = (round(summary['round_trip_ms']['p99'] / summary['round_trip_ms']['p50'], 2)
                                          if ok else None)
    summary['throughput'] = {}
    for phase_start, phase_end, tokens in schedule[1:]:
        done = [c for c in calls if phase_start <= c['t'] < phase_end and not c['lost'] and c['ok']]
        summary['throughput'][str(tokens)] = {
            'queries_per_s': round(len(done) / (phase_end - phase_start), 2),
            'node_total_ms': _percentiles([c['node_ms'] for c in done])}
    summary['rss_mb'] = _rss_summary(rss, args.duration)
    return summary


def _minute_medians(samples) -> list[tuple[float, float]]:
    """(end of minute, median RSS of the samples in it): the level, without one query's transient buffers."""
    out = []
    for m in range(1, math.ceil(samples[-1][0] / 60) + 1):
        window = [mb for t, mb in samples if 60.0 * (m - 1) <= t < 60.0 * m]
        if window:
            out.append((60.0 * m, float(np.median(window))))
    return out


def _rss_summary(rss, duration) -> dict:
    """RSS growth from minute 2 to the end and its spread over the last five minutes, both on minute
    medians (the level), beside the raw samples' spread and the least-squares slope of the last five."""
    samples = [(t, mb) for t, mb in rss if 0 <= t <= duration]
    if not samples:
        return {}
    medians = _minute_medians(samples) or [(samples[-1][0], samples[-1][1])]
    from_t = min(120.0, duration / 5)
    base = min(medians, key=lambda m: abs(m[0] - from_t))[1]
    tail_start = max(0.0, duration - 300.0)
    tail_levels = [mb for t, mb in medians if t > tail_start] or [medians[-1][1]]
    tail = [(t, mb) for t, mb in samples if t >= tail_start]
    slope = np.polyfit([t / 60 for t, _ in tail], [mb for _, mb in tail], 1)[0] if len(tail) > 2 else 0.0
    level = float(np.mean(tail_levels))
    return {'first': round(samples[0][1], 1), 'last': round(samples[-1][1], 1),
            'max': round(max(mb for _, mb in samples), 1),
            'minute_medians': [round(mb, 1) for _, mb in medians],
            'growth_from_s': from_t, 'growth_pct': round(100.0 * (medians[-1][1] - base) / base, 2),
            'last_5min_spread_pct': round(100.0 * (max(tail_levels) - min(tail_levels)) / level, 2),
            'last_5min_raw_spread_pct': round(100.0 * (max(mb for _, mb in tail) - min(mb for _, mb in tail))
                                              / level, 2),
            'last_5min_slope_mb_per_min': round(float(slope), 3),
            'samples': [(round(t, 1), round(mb, 1)) for t, mb in samples]}


def _plot(rss, path: Path, args) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([t / 60 for t, _ in rss], [mb for _, mb in rss], lw=0.8, label='samples')
    medians = _minute_medians([(t, mb) for t, mb in rss if t >= 0]) if rss else []
    ax.plot([(t - 30) / 60 for t, _ in medians], [mb for _, mb in medians], 'o-', label='minute median')
    ax.axvline(args.duration / 60, color='grey', linestyle=':', label='end of the main load')
    ax.set_xlabel('minutes since the clients started')
    ax.set_ylabel('node RSS (MiB)')
    ax.set_title(f'{args.clients} clients, camera {args.camera_hz:g} Hz, standing prompt at {args.rate:g} Hz')
    ax.legend(loc='lower right')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_summary(r: dict) -> str:
    rt, node = r['round_trip_ms'], r['node_total_ms']
    lines = [
        f"node: {r.get('backend_line', '').split(']: ')[-1]}",
        f"camera: {r['camera']['published']} frames published at {r['camera']['hz']:g} Hz, "
        f"{r['camera']['publish_failures']} writes not acknowledged in time",
        f"calls {r['calls']}: ok {r['ok']}, busy {r['busy']} ({100 * r['busy_fraction']:.1f} %), "
        f"lost {r['lost']}, other failures {sum(r['failures'].values())} {r['failures'] or ''}",
        f"queries/s {r['queries_per_s']}; round trip p50/p90/p99/max {rt.get('p50')}/{rt.get('p90')}/{rt.get('p99')}/"
        f"{rt.get('max')} ms (p99/p50 {r['round_trip_p99_over_p50']}); node total_ms p50/p90/p99 "
        f"{node.get('p50')}/{node.get('p90')}/{node.get('p99')} ms",
        f"busy answers: round trip p50/p99 {r['busy_round_trip_ms'].get('p50')}/{r['busy_round_trip_ms'].get('p99')} ms",
        f"standing prompt: {r['standing']['results_per_s']}/s of {r['standing']['rate']} "
        f"({100 * r['standing']['fraction_of_rate']:.0f} %)",
        f"RSS MiB: minute medians {r['rss_mb'].get('minute_medians')}; growth from {r['rss_mb'].get('growth_from_s')} s "
        f"{r['rss_mb'].get('growth_pct')} %; last five minutes: medians spread {r['rss_mb'].get('last_5min_spread_pct')} "
        f"%, samples spread {r['rss_mb'].get('last_5min_raw_spread_pct')} %, slope "
        f"{r['rss_mb'].get('last_5min_slope_mb_per_min')} MiB/min",
    ]
    for tokens, phase in r['throughput'].items():
        lines.append(f"throughput at {tokens} tokens: {phase['queries_per_s']} queries/s, node total_ms p50 "
                     f"{phase['node_total_ms'].get('p50')}")
    e = r['exit']
    lines.append(f"SIGINT: exit {e['code']} after {e['seconds_after_sigint']} s; error lines: {len(e['error_lines'])}")
    lines += [f'  {line}' for line in e['error_lines']]
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='ros-pgpt soak', description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--duration', type=float, default=600.0, help='seconds of the main load (default 600)')
    parser.add_argument('--clients', type=int, default=4)
    parser.add_argument('--camera-hz', type=float, default=30.0)
    parser.add_argument('--rate', type=float, default=5.0, help="the standing prompt's rate parameter")
    parser.add_argument('--standing', default=STANDING_PROMPT)
    parser.add_argument('--tokens', type=int, default=0, help='visual tokens of the main load (0 = node default)')
    parser.add_argument('--throughput-tokens', type=lambda s: [int(v) for v in s.split(',') if v], default=[],
                        help='after the main load, one phase per count with every client at it, e.g. 16,64')
    parser.add_argument('--phase-seconds', type=float, default=30.0)
    parser.add_argument('--queue-size', type=int, default=0, help="the node's queue_size (0 = its default)")
    parser.add_argument('--backend', default='', help="the node's backend (default: config/perception.yaml)")
    parser.add_argument('--call-timeout', type=float, default=30.0, help='a call unanswered this long is lost')
    parser.add_argument('--warmup', type=float, default=5.0)
    parser.add_argument('--rss-period', type=float, default=2.0)
    parser.add_argument('--start-timeout', type=float, default=300.0)
    parser.add_argument('--exit-timeout', type=float, default=20.0)
    parser.add_argument('--domain-id', type=int, default=None,
                        help='ROS_DOMAIN_ID of the private ROS world (default: a random one in 1-100)')
    parser.add_argument('--out', default='soak_output')
    args = parser.parse_args(argv)
    report = run_soak(args)
    print(format_summary(report), end='')
    print(f'written: {Path(args.out).resolve()}/soak.json, summary.txt, rss.png, node.log')
    return 0


if __name__ == '__main__':
    sys.exit(main())
