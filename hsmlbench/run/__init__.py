"""Training, evaluation, the grid of jobs and its executors: one pipeline for every domain."""
