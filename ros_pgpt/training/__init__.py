"""Training and evaluation: ``loop`` (``ros-pgpt train``), ``config`` (TrainConfig),
``batching`` (SequenceBatch from scenes), ``teacher_forcing`` (the training pass) and
``objectives`` (its losses, one function per family), ``evaluate`` / ``eval_conditions``
(``ros-pgpt eval``), ``frozen_vision`` and ``numerics`` (CPU speed)."""
