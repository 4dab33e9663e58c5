"""hsmlbench: a reference reproduction of Hierarchically Structured Meta-learning (ICML 2019)."""

__version__ = "0.1.0"
