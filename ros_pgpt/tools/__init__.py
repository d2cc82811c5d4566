"""Developer tools behind ``ros-pgpt`` subcommands (ablate, bench, diagnose, info, llm-choice,
parity, soak, train-bench, wording). Only ``ros_pgpt.cli`` imports them."""
