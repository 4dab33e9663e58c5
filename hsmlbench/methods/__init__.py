"""Meta-learners: the shared meta-learner and inner loop, MAML, MUMOMAML, HSML and its continual
variants, the task encoders, the fast meta-step, and the registry (the one place methods are known).

Methods never import a domain's data pipeline, the grid or the CLI."""
