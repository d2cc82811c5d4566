"""``ros-pgpt prompts``: show or change the running node's standing prompts (its ~/set_prompts service).

    ros-pgpt prompts list
    ros-pgpt prompts set "the red star" "every circle"     # replace the list
    ros-pgpt prompts add "the blue square"
    ros-pgpt prompts remove "every circle"
    ros-pgpt prompts clear

Prints the standing prompts after the call, one per line. Exit status: 0
done, 1 the node refused (reason printed, nothing changed), 3 no service /
no answer within --timeout.
"""
from __future__ import annotations

import argparse
import sys

DEFAULT_NODE = '/ros_pgpt'
ACTIONS = {'set': 'REPLACE', 'add': 'ADD', 'remove': 'REMOVE', 'clear': 'CLEAR', 'list': 'LIST'}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='ros-pgpt prompts', description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='\n'.join(__doc__.splitlines()[1:]))
    parser.add_argument('action', choices=tuple(ACTIONS), help='set (replace), add, remove, clear or list')
    parser.add_argument('prompts', nargs='*', help='prompts for set, add and remove')
    parser.add_argument('--node', default=DEFAULT_NODE, help=f'the perception node (default {DEFAULT_NODE})')
    parser.add_argument('--timeout', type=float, default=10.0, metavar='S',
                        help='seconds to wait for the service and for the answer (default 10)')
    args = parser.parse_args(argv)
    if args.action in ('add', 'remove') and not args.prompts:
        parser.error(f'{args.action} needs at least one prompt')
    if args.action in ('clear', 'list') and args.prompts:
        parser.error(f'{args.action} takes no prompts')

    from ros_pgpt.ros.query import QueryClient
    from ros_pgpt.srv import SetPrompts

    service = args.node.rstrip('/') + '/set_prompts'
    client = QueryClient(service, node_name='ros_pgpt_prompts_client', service_type=SetPrompts)
    try:
        if not client.wait(args.timeout):
            print(f'ros-pgpt prompts: service {service} not available within {args.timeout:g} s '
                  f'(is the node running, on the same ROS_DOMAIN_ID?)', file=sys.stderr)
            return 3
        mode = getattr(SetPrompts.Request, ACTIONS[args.action])
        response, _ms = client.call(SetPrompts.Request(mode=mode, prompts=args.prompts), args.timeout)
        if response is None:
            print(f'ros-pgpt prompts: no answer from {service} within {args.timeout:g} s', file=sys.stderr)
            return 3
        if not response.success:
            print(f'refused: {response.message}', file=sys.stderr)
        print('\n'.join(response.prompts) if response.prompts else '(no standing prompts)')
        return 0 if response.success else 1
    finally:
        client.close()


if __name__ == '__main__':
    sys.exit(main())
