"""Training and evaluation: ``loop`` (``ros-pgpt train``), ``config`` (TrainConfig),
``batching`` (SequenceBatch from scenes), ``evaluate`` / ``eval_conditions``
(``ros-pgpt eval``), ``frozen_vision`` and ``numerics`` (CPU speed)."""
