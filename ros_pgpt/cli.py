"""The ``ros-pgpt`` command: a small, lazy subcommand dispatcher.

Each subcommand lives in its own module and is registered below in
``COMMANDS`` as ``name -> ("package.module:function", "one-line help")``.
Modules are imported only when their command runs, so ``ros-pgpt --help``
stays fast and never imports torch or rclpy.

Adding a subcommand (e.g. ``train``):

1. write ``ros_pgpt/<role>/<module>.py`` with ``def main(argv: list[str]) -> int``
   that builds its own ``argparse.ArgumentParser(prog='ros-pgpt train')``,
   parses ``argv`` and returns an exit code (``None`` counts as 0). Import
   heavy libraries inside ``main`` after parsing, so ``--help`` stays fast;
2. add one line to ``COMMANDS``:
   ``'train': ('ros_pgpt.training.loop:main', 'train the model'),``.

``python -m ros_pgpt <command> ...`` works the same as ``ros-pgpt``.
"""
import argparse
import importlib
import sys

from ros_pgpt import __version__

# Keep sorted; one line per command.
COMMANDS = {
    'ablate': ('ros_pgpt.tools.ablate:main', 'train and compare the ablation variants; writes docs/RESULTS.md + plots'),
    'bench': ('ros_pgpt.tools.bench:main', 'end-to-end query latency per backend, stage and token count'),
    'demo': ('ros_pgpt.tools.demo:main', 'run the demo: node + sample bag replay + queries, overlays in demo_output/'),
    'diagnose': ('ros_pgpt.tools.diagnose:main', 'where a checkpoint fails: outcome of each held-out prompt by family'),
    'eval': ('ros_pgpt.training.evaluate:main', 'evaluate a checkpoint on held-out scenes'),
    'export': ('ros_pgpt.export.onnx_export:main', 'export a checkpoint to ONNX (+int8 LLM, +TensorRT engines) with a manifest'),
    'info': ('ros_pgpt.tools.info:main', 'print versions and what is importable (rclpy, interfaces, torch)'),
    'llm-choice': ('ros_pgpt.tools.llm_choice:main', 'measure the LLM candidates (size, latency, training cost)'),
    'make-bag': ('ros_pgpt.ros.bags:make_bag_main', 'write the sample camera bag (synthetic scene, + ground-truth JSON)'),
    'node': ('ros_pgpt.ros.run_node:main', 'run the perception node (= ros2 run ros_pgpt perception_node; --ros-args ...)'),
    'prompts': ('ros_pgpt.ros.prompts_cli:main', "show or change the running node's standing prompts (set/add/remove/clear/list)"),
    'query': ('ros_pgpt.ros.query:main', 'ask the running node for objects in words; print boxes/masks'),
    'record': ('ros_pgpt.ros.bags:record_main', "record topics (default: the node's detections) into a bag"),
    'replay': ('ros_pgpt.ros.bags:replay_main', 'publish a ROS 2 bag (mcap/sqlite3) with its original timing'),
    'soak': ('ros_pgpt.tools.soak:main', 'drive the node like a robot (camera, clients, standing prompt); latency, RSS, exit'),
    'train': ('ros_pgpt.training.loop:main', 'train the grounding model from a config file'),
    'train-bench': ('ros_pgpt.tools.train_bench:main', "where a training step's time goes: median ms per stage"),
    'wording': ('ros_pgpt.tools.wording:main', 'how the model reads a prompt; --check: held-out synonyms and unknown words'),
}


def resolve(name):
    """Import and return the function registered for command ``name``."""
    target, _help = COMMANDS[name]
    module_name, _, func_name = target.partition(':')
    module = importlib.import_module(module_name)
    return getattr(module, func_name or 'main')


def build_parser():
    width = max(len(name) for name in COMMANDS)
    listing = '\n'.join(f'  {name:<{width}}  {text}' for name, (_t, text) in sorted(COMMANDS.items()))
    parser = argparse.ArgumentParser(
        prog='ros-pgpt',
        description='ros_pgpt: ask for objects in words, get boxes and pixel masks (ROS 2).',
        epilog=f'commands:\n{listing}\n\n"ros-pgpt COMMAND --help" shows the options of a command.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument('--version', action='version', version=f'ros_pgpt {__version__}')
    parser.add_argument('command', metavar='COMMAND', choices=sorted(COMMANDS),
                        help='one of: ' + ', '.join(sorted(COMMANDS)))
    parser.add_argument('args', nargs=argparse.REMAINDER, help='arguments of the command')
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 2
    ns = parser.parse_args(argv)
    try:
        func = resolve(ns.command)
    except ImportError as exc:
        print(f'ros-pgpt {ns.command}: not available ({exc})', file=sys.stderr)
        return 1
    rc = func(ns.args)
    return 0 if rc is None else int(rc)


if __name__ == '__main__':
    sys.exit(main())
