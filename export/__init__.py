"""ros_pgpt.export: model export (ONNX etc.); see export/README.md.

This folder is installed as the subpackage ``ros_pgpt.export`` (setup.py
``package_dir`` and the CMake install both map it there).
"""
