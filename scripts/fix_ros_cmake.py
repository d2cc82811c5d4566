#!/usr/bin/env python3
"""Point the ROS wheels' exported CMake files at THIS Python's include dirs.

The ROS 2 PyPI wheels were built in a manylinux container; their exported
CMake files (share/*/cmake/*.cmake under the venv prefix) hard-code that
machine's include dirs, e.g.::

    /opt/python/cp311-cp311/include/python3.11
    /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include

Building our own rosidl package against them fails until they are rewritten
to the local Python and numpy include dirs. This script does that in place.
It is idempotent (a second run changes nothing) and works for any CPython
3.10-3.13 (cpXY-cpXY and free-threaded cpXY-cpXYt tags).

Run it with the venv's python:  .venv/bin/python scripts/fix_ros_cmake.py
"""
import os
import re
import sys
import sysconfig

_TAG = r'/opt/python/cp3\d+-cp3\d+t?'
# numpy include dir of the build machine (numpy >= 2: numpy/_core/include,
# numpy 1.x: numpy/core/include).
NUMPY_RE = re.compile(_TAG + r'/lib/python3\.\d+t?/site-packages/numpy/_?core/include')
PYTHON_RE = re.compile(_TAG + r'/include/python3\.\d+t?')


def local_include_dirs():
    py_inc = sysconfig.get_paths()['include']
    if not os.path.isfile(os.path.join(py_inc, 'Python.h')):
        raise SystemExit(
            f'fix_ros_cmake: Python.h not found in {py_inc}; install the Python '
            f'development headers (Debian/Ubuntu: apt-get install '
            f'python{sys.version_info.major}.{sys.version_info.minor}-dev)')
    import numpy
    return py_inc, numpy.get_include()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    prefix = argv[0] if argv else sys.prefix
    py_inc, np_inc = local_include_dirs()
    share = os.path.join(prefix, 'share')
    changed = 0
    for dirpath, _dirnames, filenames in os.walk(share):
        for name in filenames:
            if not name.endswith('.cmake'):
                continue
            path = os.path.join(dirpath, name)
            with open(path, encoding='utf-8', errors='surrogateescape') as f:
                text = f.read()
            if '/opt/python/' not in text:
                continue
            # numpy first: its path contains the python one's prefix.
            new = NUMPY_RE.sub(lambda _m: np_inc, text)
            new = PYTHON_RE.sub(lambda _m: py_inc, new)
            if new != text:
                tmp = path + '.tmp'
                with open(tmp, 'w', encoding='utf-8', errors='surrogateescape') as f:
                    f.write(new)
                os.replace(tmp, path)
                changed += 1
    print(f'fix_ros_cmake: {changed} file(s) rewritten '
          f'(python include {py_inc}, numpy include {np_inc})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
