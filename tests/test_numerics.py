"""Denormal floats flushed to zero (ros_pgpt/training/numerics.py); that a training step runs with them
flushed is checked in test_training.py."""

from ros_pgpt.training.numerics import flush_denormals


def test_flush_denormals_zeroes_denormal_results(denormals_kept):
    assert flush_denormals()
    assert denormals_kept()
