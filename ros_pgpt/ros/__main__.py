"""``python -m ros_pgpt.ros [--ros-args ...]``: run the perception node."""
import sys

from ros_pgpt.ros.run_node import main

sys.exit(main())
