"""The CPU's floating-point mode for our processes: denormal floats flushed to zero."""

from __future__ import annotations


def flush_denormals() -> bool:
    """Flush denormal floats to zero (x86 FTZ/DAZ) for torch on the CPU; False where unsupported.

    A trained model's softmaxes are sharp (a mask puts its mass on one object), so
    gradients and activations below 1.2e-38 appear, and x86 arithmetic on them is
    an order of magnitude slower: one conv's backward took 200 ms instead of 16 on
    the trained checkpoint, training steps slowed from 1.3 to 1.9 s as the model
    learned, and a step from the shipped checkpoint takes ~1.25x longer with them
    (``ros-pgpt train-bench --checkpoint DIR --keep-denormals``). Queries were not
    measurably slower (forward passes only), so only training sets it. Values that
    small are far below anything a loss, a box or a mask can resolve. Call it before
    torch's first parallel op, since its worker threads copy the mode when they
    start and a later call reaches the calling thread only; and call it again where
    work starts (each training step), since the calling thread was seen to lose it
    during setup (measured, cause not found; the call costs nothing).
    """
    import torch

    return torch.set_flush_denormal(True)
