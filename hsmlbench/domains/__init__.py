"""Domains: what a task is. Each says how meta-batches and the fixed test tasks are drawn, its
base learner, loss and metric, and its tables; training, evaluation, the grid and the CLI
(``hsmlbench.run``, ``hsmlbench.cli``) are written once and take a domain object."""
