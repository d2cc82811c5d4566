"""``python -m ros_pgpt``: same as the ``ros-pgpt`` command."""
import sys

from ros_pgpt.cli import main

sys.exit(main())
