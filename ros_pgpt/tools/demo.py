"""``ros-pgpt demo``: the perception node end to end, on a fresh machine, in about a minute.

1. checks the installation (rclpy, the ros_pgpt interfaces, the default checkpoint);
2. makes the sample camera bag (``demo_output/sample_bag``) unless it exists;
3. starts the perception node as a child process (``ros-pgpt node`` with
   ``config/perception.yaml``) in a private ROS world on loopback (own domain
   id and ROS_HOME), with one standing prompt;
4. replays the bag onto ``/camera/image_raw`` with its original timing and
   collects the standing-prompt detections;
5. asks several prompts through the real ``/ros_pgpt/query`` service (single,
   a second prompt on the same frame = cached, plural, absent, fewer visual
   tokens, an image sent inline) and prints a results table with ground-truth
   IoU and the measured service round trip;
6. writes overlay PNGs (one per query, and one the node drew on ``~/overlay``);
7. stops the node.

Exit status 0 only when every step worked: node up, frames received, every
service call succeeded, overlays written. (Accuracy is reported, not required.)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path



class DemoFailure(Exception):
    pass


def _step(n, total, text):
    print(f'\n[{n}/{total}] {text}', flush=True)


def _slug(text: str) -> str:
    return re.sub(r'[^a-z0-9]+', '_', text.lower()).strip('_')[:40]


def _pick_queries(truth: dict) -> list[dict]:
    """single, a second single (same frame: cached), plural, absent, single with 16 visual tokens."""
    by_kind: dict[str, list] = {}
    for q in truth['queries']:
        by_kind.setdefault(q['kind'], []).append(q)
    singles = by_kind.get('single', [])
    plan = []
    if singles:
        plan.append(dict(singles[0], tokens=0, masks=True, note='single'))
    if len(singles) > 1:
        plan.append(dict(singles[1], tokens=0, masks=True, note='same frame: cached'))
    if by_kind.get('plural'):
        plan.append(dict(by_kind['plural'][0], tokens=0, masks=True, note='plural'))
    if by_kind.get('absent'):
        plan.append(dict(by_kind['absent'][0], tokens=0, masks=False, note='absent'))
    if singles:
        plan.append(dict(singles[-1], tokens=16, masks=True, note='16 visual tokens'))
    return plan


def _fmt_box(box) -> str:
    return '(' + ', '.join(f'{v:.0f}' for v in box) + ')'


def run_demo(args) -> int:
    from ros_pgpt.data.geometry import match_boxes
    from ros_pgpt.ros import bags, conversions
    from ros_pgpt.tools import info as _info
    from ros_pgpt.ros.launcher import isolated_env, node_command, write_params_file

    total = 7
    out_dir = Path(args.output).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob('overlay_*.png'):
        old.unlink()

    # ---------------------------------------------------------------- 1
    _step(1, total, 'installation')
    facts = _info.collect()
    if not facts.get('rclpy') or not facts.get('interfaces'):
        raise DemoFailure('rclpy or the ros_pgpt interfaces are not importable; run: bash scripts/setup.sh')
    from ros_pgpt.checkpoints import default_checkpoint
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    if not (checkpoint / 'model.safetensors').is_file():
        raise DemoFailure(f'no trained checkpoint at {checkpoint} (model.safetensors missing); '
                          f'train one (ros-pgpt train) or set ROS_PGPT_CHECKPOINT')
    print(f'rclpy {facts.get("rclpy")}, interfaces ok, checkpoint {checkpoint}')

    # ---------------------------------------------------------------- 2
    _step(2, total, 'sample camera bag')
    bag = Path(args.bag).resolve() if args.bag else out_dir / 'sample_bag'
    truth = bags.load_ground_truth(bag) if bag.exists() else None
    if truth is None:
        if bag.exists():
            raise DemoFailure(f'{bag} exists but has no {bags.GROUND_TRUTH}; remove it or pass another --bag')
        t0 = time.perf_counter()
        truth = bags.make_sample_bag(bag, frames=args.frames, fps=10.0, seed=args.seed)
        print(f'made {bag} in {time.perf_counter() - t0:.1f} s')
    else:
        print(f'using {bag}')
    print(f'{truth["frames"]} frames {truth["width"]}x{truth["height"]} on {truth["topic"]} at {truth["fps"]:g} Hz; '
          f'{len(truth["objects"])} objects: ' + ', '.join(f'{o["size"]} {o["colour"]} {o["shape"]}'
                                                           for o in truth['objects']))
    last_frame = None
    for _, msg in bags.read_frames(bag, truth['topic']):
        last_frame = msg
    last_rgb = (conversions.compressed_msg_to_rgb(last_frame) if truth['msgtype'].endswith('CompressedImage')
                else conversions.image_msg_to_rgb(last_frame))
    plan = _pick_queries(truth)
    if len(plan) < 3:
        raise DemoFailure('the sample bag has too few answerable queries; try another --seed')
    standing = plan[0]['prompt']

    # ---------------------------------------------------------------- 3
    _step(3, total, 'start the perception node')
    ros_home = Path(tempfile.mkdtemp(prefix='ros_pgpt_demo_'))
    env = isolated_env(ros_home)
    if args.checkpoint:
        env['ROS_PGPT_CHECKPOINT'] = str(checkpoint)
    overrides = write_params_file(ros_home / 'demo_params.yaml', {
        'max_image_age': 0.0,  # the queries below ask about the bag's last frame after the replay ended
        'standing_prompts': [standing], 'rate': 2.0})
    remap_from = 'image/compressed' if truth['msgtype'].endswith('CompressedImage') else 'image'
    argv = node_command(params_files=[overrides], remaps={remap_from: truth['topic']})
    if remap_from == 'image/compressed':
        argv += ['-p', 'input:=compressed']
    log_path = out_dir / 'node.log'
    print('$ ' + ' '.join(argv[1:]).replace(str(Path.cwd()) + '/', ''))
    print(f'ROS_DOMAIN_ID={env["ROS_DOMAIN_ID"]} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST; log: {log_path}')
    log_file = open(log_path, 'w')
    node_proc = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_HOME', 'ROS_LOG_DIR')})

    from ros_pgpt.ros.query import QueryClient, build_request, format_result

    client = None
    summary = {'bag': str(bag), 'queries': [], 'standing': {}, 'ok': False}
    try:
        client = QueryClient('/ros_pgpt/query', overlay_topic='/ros_pgpt/overlay', node_name='ros_pgpt_demo',
                             domain_id=int(env['ROS_DOMAIN_ID']))
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from ros_pgpt.msg import GroundedObjectArray
        detections = []
        client.node.create_subscription(GroundedObjectArray, '/ros_pgpt/detections', detections.append,
                                        QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        t0 = time.perf_counter()
        if not client.wait(args.timeout, alive=lambda: node_proc.poll() is None):
            log_file.flush()
            raise DemoFailure(f'the node did not come up (exit code {node_proc.poll()}):\n'
                              + log_path.read_text()[-3000:])
        print(f'node up: /ros_pgpt/query available after {time.perf_counter() - t0:.1f} s')
        backend = next((line.split('configured in ')[1] for line in log_path.read_text().splitlines()
                        if 'configured in ' in line), 'unknown (see the node log)')
        print(f'node: {backend}')
        summary['node_backend'] = backend

        # ------------------------------------------------------------ 4
        _step(4, total, f'replay the bag (standing prompt: {standing!r} at <= 2 Hz)')
        sent = []
        errors = []

        def play():
            try:
                sent.append(bags.replay(bag, context=client.context, wait_subscribers=20.0, log=print))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        player = threading.Thread(target=play, daemon=True)
        t0 = time.perf_counter()
        player.start()
        while player.is_alive():
            client.spin(0.05)
        if errors:
            raise DemoFailure(f'replay failed: {errors[0]}')
        client.spin(1.0)
        standing_msgs = [d for d in detections if d.standing]  # all standing prompts of a frame: one message
        print(f'published {sent[0]} frames in {time.perf_counter() - t0:.1f} s; '
              f'{len(standing_msgs)} standing-prompt results on /ros_pgpt/detections')
        for d in standing_msgs[:3]:
            print(f'  stamp {d.header.stamp.sec}.{d.header.stamp.nanosec:09d}: {len(d.objects)} object(s) '
                  + ' '.join(f'#{o.track_id} ' + _fmt_box((o.x_min, o.y_min, o.x_max, o.y_max)) for o in d.objects)
                  + f'  ({d.total_ms:.0f} ms)')
        summary['standing'] = {'prompt': standing, 'results': len(standing_msgs), 'frames_published': sent[0]}

        # ------------------------------------------------------------ 5
        _step(5, total, 'queries through /ros_pgpt/query')
        from ros_pgpt.data import SceneGenerator
        inline = SceneGenerator(resolutions=[(640, 480)]).sample(args.seed + 1, n_queries=12)
        inline_q = next((q for q in inline.queries if q.kind == 'single' and not q.input_boxes), None)
        if inline_q is not None:
            plan.append({'prompt': inline_q.prompt, 'kind': 'single', 'tokens': 0, 'masks': True,
                         'note': 'image sent inline',
                         'boxes_last_frame': [list(inline.scene.objects[t].box) for t in inline_q.targets],
                         'inline': True})
        rows, failures = [], []
        for i, q in enumerate(plan, 1):
            image = inline.scene.image if q.get('inline') else None
            request = build_request(q['prompt'], image=image, masks=q['masks'], tokens=q['tokens'],
                                    frame_id='inline_demo')
            response, ms = client.call(request, args.timeout)
            if response is None:
                failures.append(f'{q["prompt"]!r}: no answer within {args.timeout:g} s')
                continue
            if not response.success:
                failures.append(f'{q["prompt"]!r}: {response.message}')
                continue
            result = response.result
            if i == 1:
                stamp_ns = result.header.stamp.sec * 10**9 + result.header.stamp.nanosec
                if stamp_ns != truth['last_stamp_ns']:
                    failures.append(f'the node answered on frame {stamp_ns}, not the bag\'s last frame '
                                    f'{truth["last_stamp_ns"]}: frames were lost')
            boxes = [(o.x_min, o.y_min, o.x_max, o.y_max) for o in result.objects]
            gt = q['boxes_last_frame']
            ious = match_boxes(boxes, gt) if gt else []
            if gt:
                verdict = f'{statistics.mean(ious):.2f}'
            else:
                verdict = 'ok' if not boxes else 'wrong'
            rows.append({'n': i, 'prompt': q['prompt'], 'kind': q['kind'], 'note': q['note'],
                         'tokens': result.visual_tokens, 'found': len(boxes), 'truth': len(gt),
                         'iou': verdict, 'cached': result.frame_cached, 'node_ms': result.total_ms,
                         'rtt_ms': ms, 'boxes': boxes, 'scores': [o.score for o in result.objects],
                         'answer': result.answer})
            # overlay of this answer
            base = inline.scene.image if q.get('inline') else last_rgb
            png = out_dir / f'overlay_{i:02d}_{_slug(q["prompt"])}.png'
            conversions.write_image_file(png, conversions.draw_overlay(base, conversions.detections_from_msg(result),
                                                             title=f'{q["prompt"]} ({result.visual_tokens} tokens)'))
            rows[-1]['overlay'] = str(png)
            if args.verbose:
                print(format_result(result, ms))
        print()
        head = (f'{"#":>2}  {"prompt":<38} {"case":<18} {"tok":>3} {"found/gt":>8} {"IoU":>5} '
                f'{"cached":>6} {"node ms":>8} {"rtt ms":>8}')
        print(head)
        print('-' * len(head))
        for r in rows:
            print(f'{r["n"]:>2}  {r["prompt"][:38]:<38} {r["note"][:18]:<18} {r["tokens"]:>3} '
                  f'{r["found"]:>4}/{r["truth"]:<3} {r["iou"]:>5} {"yes" if r["cached"] else "no":>6} '
                  f'{r["node_ms"]:8.1f} {r["rtt_ms"]:8.1f}')
            for box, score in zip(r['boxes'], r['scores']):
                print(f'{"":>4}box {_fmt_box(box)} score {score:.2f}')
        for f in failures:
            print(f'FAILED: {f}')
        rtts = [r['rtt_ms'] for r in rows]
        if rtts:
            uncached = [r['rtt_ms'] for r in rows if not r['cached']]
            cached = [r['rtt_ms'] for r in rows if r['cached']]
            print(f'\nservice round trip: median {statistics.median(rtts):.1f} ms over {len(rtts)} calls'
                  + (f'; new frame median {statistics.median(uncached):.1f} ms' if uncached else '')
                  + (f'; cached frame median {statistics.median(cached):.1f} ms' if cached else ''))
        summary['queries'] = rows
        summary['round_trip_ms_median'] = statistics.median(rtts) if rtts else None

        # ------------------------------------------------------------ 6
        _step(6, total, 'overlays')
        # The node draws ~/overlay only while someone subscribes: the client does.
        node_overlay = next((m for m in reversed(client.overlays) if m.width), None)
        if node_overlay is None:
            client.spin(1.0)
            node_overlay = next((m for m in reversed(client.overlays) if m.width), None)
        written = sorted(out_dir.glob('overlay_*.png'))
        if node_overlay is not None:
            path = out_dir / 'node_overlay.png'
            conversions.write_image_file(path, conversions.image_msg_to_rgb(node_overlay))
            written.append(path)
        else:
            failures.append('no image on /ros_pgpt/overlay')
        for path in written:
            print(f'  {path}')
        if len([p for p in written if p.name.startswith('overlay_')]) != len(rows):
            failures.append('not every query has an overlay PNG')

        # ------------------------------------------------------------ 7
        _step(7, total, 'stop the node')
        client.close()
        client = None
        node_proc.send_signal(signal.SIGINT)
        try:
            code = node_proc.wait(20)
        except subprocess.TimeoutExpired:
            node_proc.kill()
            code = node_proc.wait()
            failures.append('the node did not stop on SIGINT within 20 s')
        print(f'node exited with code {code}')
        if code != 0:
            failures.append(f'node exit code {code}')
        if not standing_msgs:
            failures.append('no standing-prompt results: frames did not reach the node')
        summary['ok'] = not failures
        summary['failures'] = failures
        (out_dir / 'results.json').write_text(json.dumps(summary, indent=1, default=float))
        if failures:
            print(f'\ndemo FAILED ({len(failures)} problem(s)); node log: {log_path}', file=sys.stderr)
            return 1
        print(f'\ndemo OK: results in {out_dir}')
        return 0
    finally:
        if client is not None:
            client.close()
        if node_proc.poll() is None:
            node_proc.send_signal(signal.SIGINT)
            try:
                node_proc.wait(10)
            except subprocess.TimeoutExpired:
                node_proc.kill()
        log_file.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='ros-pgpt demo', description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='\n'.join(__doc__.splitlines()[1:]))
    parser.add_argument('--output', default='demo_output', help='folder for the bag, overlays, results (default demo_output)')
    parser.add_argument('--bag', help='camera bag to replay (default OUTPUT/sample_bag, made when absent)')
    parser.add_argument('--checkpoint', help='model checkpoint (default: $ROS_PGPT_CHECKPOINT or the shipped one)')
    parser.add_argument('--seed', type=int, default=7, help='scene seed of a new sample bag (default 7)')
    parser.add_argument('--frames', type=int, default=40, help='frames of a new sample bag (default 40)')
    parser.add_argument('--timeout', type=float, default=180.0, help='seconds to wait for the node / an answer')
    parser.add_argument('-v', '--verbose', action='store_true', help='print every result in full')
    args = parser.parse_args(argv)
    try:
        return run_demo(args)
    except DemoFailure as exc:
        print(f'\ndemo FAILED: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
