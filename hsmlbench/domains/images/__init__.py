"""Few-shot image classification: the four datasets, their episodes, the conv learners (T3, T4).

docs/PROTOCOL.md §4. Modules, by concern:

- ``datasets``: the four datasets' specs, the committed class splits, the data root.
- ``layout``: the on-disk layout ``<root>/meta-dataset/<Folder>/{train,val,test}/<class>/*.jpg``,
  ``data check``, and decoding a split into memory once (uint8).
- ``prepare``: ``data prepare`` from each dataset's official archive (selection, crop, resize).
- ``synthetic``: a procedurally drawn four-domain image set, for tests and ``--dataset synthetic``.
- ``episodes``: 5-way K-shot episodes, fixed evaluation tasks, a background loader.
- ``base_learner``: the 4-block conv learner with batch-statistics batch norm, Σ CE / K.
- ``encoders``: HSML's per-image CNN and GRU task representation; MUMOMAML's conv encoder.
- ``models``: MAML, MUMOMAML and HSML on images; ``continual``: T4's stream and HSML-D growth.
- ``configs``: T3/T4 as frozen configs and budgets; ``domain``: what the one pipeline
  (``hsmlbench.run``) asks of this domain; ``data_commands``: ``data prepare`` / ``data check``.
"""
