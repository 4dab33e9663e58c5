"""T4's continual stream and HSML-D's growth trigger on images (docs/PROTOCOL.md §4).

- ``active_datasets``: which datasets the stream draws from at an iteration.
- ``should_grow``: at the end of each window of ``window`` iterations, HSML-D adds a
  first-level cluster when the window's mean post-adaptation query accuracy is below
  ``drop_ratio`` times the previous window's, and at least ``cooldown`` iterations have passed
  since the last addition (none before the first: the cool-down is between additions, as
  regression's rule in ``hsmlbench.methods.continual``).

Adding the cluster itself is regression's mechanism, reused: ``hsmlbench.methods.continual.
GrowableClusterTree.add_cluster`` (fresh centre, W¹, b¹; everything else keeps its values) and
one new Adam parameter group for the new cluster (fresh optimizer state).
"""

from __future__ import annotations


def active_datasets(settings, n_datasets: int, iteration: int, iterations: int) -> list[int]:
    """Indices of the datasets open at ``iteration`` (all of them without a stream:
    ``settings`` None, else an ``ImageContinualSettings``)."""
    if settings is None:
        return list(range(n_datasets))
    return [i for i in range(n_datasets) if iteration >= settings.arrival(i, iterations)]


def should_grow(
    accuracies: list[float],
    done: int,
    last_addition: int | None,
    settings,
    iterations: int,
) -> bool:
    """HSML-D's trigger after ``done`` iterations; ``accuracies`` has one value per iteration.

    The window and cool-down are ``settings``' values scaled to a run of ``iterations``
    (exactly 100 and 8,000 at the paper's 40,000).
    """
    window = settings.window_at(iterations)
    if done % window or done < 2 * window:
        return False
    if last_addition is not None and done - last_addition < settings.cooldown_at(iterations):
        return False
    current = sum(accuracies[done - window : done]) / window
    previous = sum(accuracies[done - 2 * window : done - window]) / window
    return current < settings.drop_ratio * previous
