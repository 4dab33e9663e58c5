"""N-way K-shot episodes over the decoded splits (docs/PROTOCOL.md §4 "Episodes").

Training: each task picks one dataset uniformly (among those the stream has opened), then
N classes of its train split, then K support + 15 query images per class. Testing: 1,000 tasks
per dataset from its test split, K support + K query images per class, drawn from a fixed
evaluation seed so that every method sees the same tasks.

Every training iteration draws from its own generator, seeded from (run seed, iteration), so a
background loader can build batches ahead of time and a resumed run sees the same episodes.
Images stay uint8 until ``ImageEpisodeBatch.to`` moves them to the device and scales by 1/255
(no normalization, no augmentation; docs/PROTOCOL.md §4).

Within a task, images are ordered shot by shot with the N classes in a fresh random order for
each shot (as the authors' data generator does), so the support sequence read by HSML's GRU
does not always list the labels 0..N−1 in order.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from hsmlbench.domains.images.layout import ImageSplit


@dataclass(frozen=True)
class ImageEpisodeBatch:
    """T tasks of N·K support and N·Q query images (attribute names as the regression TaskBatch)."""

    x_support: torch.Tensor  # [T, N·K, 3, S, S], uint8 from the sampler, float after .to()
    y_support: torch.Tensor  # [T, N·K] int64 in 0..N−1
    x_query: torch.Tensor  # [T, N·Q, 3, S, S]
    y_query: torch.Tensor  # [T, N·Q]
    dataset: torch.Tensor  # [T] index into the run's dataset tuple
    classes: (
        torch.Tensor
    )  # [T, N] class index within that dataset's split; label i is classes[:, i]

    @property
    def n_tasks(self) -> int:
        return self.x_support.shape[0]

    def to(
        self, device: torch.device | str, dtype: torch.dtype = torch.float32
    ) -> ImageEpisodeBatch:
        """Moves to ``device``; uint8 images become ``dtype`` in [0, 1] there (x / 255)."""

        def images(x: torch.Tensor) -> torch.Tensor:
            x = x.to(device, non_blocking=True)
            return x.to(dtype).div_(255.0) if x.dtype == torch.uint8 else x.to(dtype)

        return ImageEpisodeBatch(
            images(self.x_support),
            self.y_support.to(device, non_blocking=True),
            images(self.x_query),
            self.y_query.to(device, non_blocking=True),
            self.dataset.to(device),
            self.classes.to(device),
        )

    def slice(self, start: int, stop: int) -> ImageEpisodeBatch:
        return ImageEpisodeBatch(
            self.x_support[start:stop],
            self.y_support[start:stop],
            self.x_query[start:stop],
            self.y_query[start:stop],
            self.dataset[start:stop],
            self.classes[start:stop],
        )

    def pin_memory(self) -> ImageEpisodeBatch:
        return ImageEpisodeBatch(
            *(
                t.pin_memory()
                for t in (
                    self.x_support,
                    self.y_support,
                    self.x_query,
                    self.y_query,
                    self.dataset,
                    self.classes,
                )
            )
        )


@dataclass(frozen=True)
class EpisodeIndices:
    """Which images make up each task: indices into the dataset split's ``images``."""

    dataset: torch.Tensor  # [T]
    classes: torch.Tensor  # [T, N]
    support: torch.Tensor  # [T, N·K]
    y_support: torch.Tensor  # [T, N·K]
    query: torch.Tensor  # [T, N·Q]
    y_query: torch.Tensor  # [T, N·Q]


def derived_seed(*parts) -> int:
    """A 60-bit seed from any parts (stable across machines and Python versions)."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:15], 16)


def episode_generator(seed: int, iteration: int) -> torch.Generator:
    """The generator of one training iteration's episodes."""
    return torch.Generator().manual_seed(derived_seed("train", seed, iteration))


def evaluation_generator(eval_seed: int, dataset: str) -> torch.Generator:
    """One dataset's fixed test tasks, independent of which other datasets a run uses."""
    return torch.Generator().manual_seed(derived_seed("eval", eval_seed, dataset))


class EpisodeSampler:
    """Draws episodes from one split per dataset (train splits for training, test for testing)."""

    def __init__(self, splits: Sequence[ImageSplit], n_way: int, k_shot: int, n_query: int) -> None:
        self.splits = list(splits)
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        for split in self.splits:
            if split.n_classes < n_way:
                raise ValueError(
                    f"{split.dataset}/{split.split}: {split.n_classes} classes < {n_way}-way"
                )
            if int(split.counts.min()) < k_shot + n_query:
                raise ValueError(
                    f"{split.dataset}/{split.split}: a class has {int(split.counts.min())} images, "
                    f"fewer than K + Q = {k_shot + n_query}"
                )

    def indices(
        self, n_tasks: int, generator: torch.Generator, datasets: Sequence[int] | None = None
    ) -> EpisodeIndices:
        """Task composition only (no images): dataset uniform among ``datasets`` (default all)."""
        datasets = list(range(len(self.splits))) if datasets is None else list(datasets)
        n, k, q = self.n_way, self.k_shot, self.n_query
        out = {
            name: [] for name in ("dataset", "classes", "support", "y_support", "query", "y_query")
        }
        for _ in range(n_tasks):
            d = datasets[int(torch.randint(len(datasets), (1,), generator=generator))]
            split = self.splits[d]
            classes = torch.randperm(split.n_classes, generator=generator)[:n]
            chosen = torch.stack(
                [
                    split.starts[c]
                    + torch.randperm(int(split.counts[c]), generator=generator)[: k + q]
                    for c in classes
                ]
            )  # [N, K + Q]
            order = torch.stack(
                [torch.randperm(n, generator=generator) for _ in range(k + q)]
            )  # [K + Q, N]
            images = chosen.t().gather(
                1, order
            )  # [K + Q, N]: shot-major, classes shuffled per shot
            out["dataset"].append(d)
            out["classes"].append(classes)
            out["support"].append(images[:k].reshape(-1))
            out["y_support"].append(order[:k].reshape(-1))
            out["query"].append(images[k:].reshape(-1))
            out["y_query"].append(order[k:].reshape(-1))
        return EpisodeIndices(
            torch.tensor(out["dataset"], dtype=torch.int64),
            *(
                torch.stack(out[name])
                for name in ("classes", "support", "y_support", "query", "y_query")
            ),
        )

    def gather(
        self, idx: EpisodeIndices, start: int = 0, stop: int | None = None
    ) -> ImageEpisodeBatch:
        """The uint8 images of tasks ``start:stop``."""
        stop = len(idx.dataset) if stop is None else stop
        xs, xq = [], []
        for t in range(start, stop):
            images = self.splits[int(idx.dataset[t])].images
            xs.append(images[idx.support[t]])
            xq.append(images[idx.query[t]])
        return ImageEpisodeBatch(
            torch.stack(xs),
            idx.y_support[start:stop],
            torch.stack(xq),
            idx.y_query[start:stop],
            idx.dataset[start:stop],
            idx.classes[start:stop],
        )

    def batch(
        self, n_tasks: int, generator: torch.Generator, datasets: Sequence[int] | None = None
    ) -> ImageEpisodeBatch:
        return self.gather(self.indices(n_tasks, generator, datasets))


class EvaluationTasks:
    """One dataset's fixed test tasks (K support + K query per class), built chunk by chunk."""

    def __init__(
        self, split: ImageSplit, n_tasks: int, n_way: int, k_shot: int, n_query: int, eval_seed: int
    ):
        self.sampler = EpisodeSampler([split], n_way, k_shot, n_query)
        self.idx = self.sampler.indices(n_tasks, evaluation_generator(eval_seed, split.dataset))
        self.n_tasks = n_tasks

    def chunks(self, size: int):
        for start in range(0, self.n_tasks, size):
            yield self.sampler.gather(self.idx, start, min(start + size, self.n_tasks))


class BackgroundLoader:
    """Builds the batches of iterations ``start..stop−1`` in a worker thread, ``depth`` ahead.

    ``make(iteration)`` must be deterministic in its iteration (see ``episode_generator``), so
    the batches do not depend on timing. Exceptions in the worker are re-raised in the
    consumer. Use as an iterator of ``(iteration, batch)``; ``close()`` stops the worker.
    """

    _DONE = object()

    def __init__(
        self,
        make: Callable[[int], ImageEpisodeBatch],
        start: int,
        stop: int,
        depth: int = 3,
        pin_memory: bool = False,
    ) -> None:
        self.make, self.start, self.stop, self.pin = make, start, stop, pin_memory
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._work, name="episode-loader", daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for iteration in range(self.start, self.stop):
                batch = self.make(iteration)
                if self.pin:
                    batch = batch.pin_memory()
                if not self._put((iteration, batch)):
                    return
        except BaseException as error:  # forwarded to the consumer
            self._put(error)
            return
        self._put(self._DONE)

    def __iter__(self):
        while True:
            item = self.queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def __enter__(self) -> BackgroundLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
