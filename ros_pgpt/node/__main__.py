"""``python -m ros_pgpt.node [--ros-args ...]``: run the perception node."""
import sys

from ros_pgpt.node import main

sys.exit(main())
