"""Episode sampler, evaluation tasks, background loader and the synthetic set
(docs/PROTOCOL.md §4)."""

import pytest
import torch

from hsmlbench.domains.images.episodes import (
    BackgroundLoader,
    EpisodeSampler,
    EvaluationTasks,
    episode_generator,
)
from hsmlbench.domains.images.layout import split_from_class_arrays
from hsmlbench.domains.images.synthetic import SYNTHETIC_DOMAINS, class_split, synthetic_split

SIZE = 16  # small images: these tests are about indices, not pixels


def labelled_split(dataset: str, n_classes: int, per_class: int, tag: int):
    """A split whose every image encodes (tag, class, index) in its first three pixels."""
    per = []
    for c in range(n_classes):
        images = torch.zeros(per_class, 3, 4, 4, dtype=torch.uint8)
        images[:, 0, 0, 0] = tag
        images[:, 0, 0, 1] = c
        images[:, 0, 0, 2] = torch.arange(per_class)
        per.append(images)
    return split_from_class_arrays(
        dataset, "train", per, [f"{dataset}-{c}" for c in range(n_classes)]
    )


@pytest.fixture(scope="module")
def splits():
    return [
        labelled_split("a", 8, 20, 1),
        labelled_split("b", 6, 17, 2),
        labelled_split("c", 7, 18, 3),
    ]


def test_shapes_labels_and_images_belong_to_the_task_classes(splits):
    sampler = EpisodeSampler(splits, n_way=5, k_shot=2, n_query=15)
    batch = sampler.batch(4, episode_generator(0, 0))
    assert batch.x_support.shape == (4, 10, 3, 4, 4) and batch.x_support.dtype == torch.uint8
    assert batch.x_query.shape == (4, 75, 3, 4, 4)
    assert batch.y_support.shape == (4, 10) and batch.y_query.shape == (4, 75)
    for t in range(4):
        d = int(batch.dataset[t])
        for x, y in (
            (batch.x_support[t], batch.y_support[t]),
            (batch.x_query[t], batch.y_query[t]),
        ):
            assert (x[:, 0, 0, 0] == d + 1).all()  # every image from the task's dataset
            classes = batch.classes[t][y]  # label i means classes[t, i]
            assert torch.equal(x[:, 0, 0, 1].long(), classes)
            assert sorted(torch.bincount(y, minlength=5).tolist()) == [len(y) // 5] * 5
        # no image twice within a task
        keys = torch.cat([batch.x_support[t], batch.x_query[t]])[:, 0, 0, 1:3].long()
        assert len({tuple(k.tolist()) for k in keys}) == 85
        # shot-major: each block of 5 support images holds each label once
        for shot in range(2):
            assert sorted(batch.y_support[t, 5 * shot : 5 * shot + 5].tolist()) == list(range(5))


def test_float_conversion_divides_by_255(splits):
    batch = EpisodeSampler(splits, 5, 1, 1).batch(2, episode_generator(0, 3))
    moved = batch.to("cpu", torch.float64)
    assert moved.x_query.dtype == torch.float64
    torch.testing.assert_close(moved.x_support, batch.x_support.double() / 255)


def test_same_seed_same_episodes_and_different_iterations_differ(splits):
    sampler = EpisodeSampler(splits, 5, 1, 15)
    a = sampler.indices(6, episode_generator(7, 11))
    b = sampler.indices(6, episode_generator(7, 11))
    c = sampler.indices(6, episode_generator(7, 12))
    assert all(torch.equal(x, y) for x, y in zip(vars(a).values(), vars(b).values()))
    assert not torch.equal(a.support, c.support)


def test_dataset_choice_is_uniform_and_restricted_to_the_open_datasets(splits):
    sampler = EpisodeSampler(splits, 5, 1, 1)
    counts = torch.bincount(sampler.indices(3000, episode_generator(0, 0)).dataset, minlength=3)
    assert (counts - 1000).abs().max() < 100
    only = sampler.indices(200, episode_generator(0, 1), datasets=[0, 2]).dataset
    assert set(only.tolist()) == {0, 2}


def test_too_few_images_or_classes_is_refused():
    with pytest.raises(ValueError, match="fewer than K \\+ Q"):
        EpisodeSampler([labelled_split("a", 6, 10, 1)], 5, 1, 15)
    with pytest.raises(ValueError, match="classes < 5-way"):
        EpisodeSampler([labelled_split("a", 4, 20, 1)], 5, 1, 1)


def test_evaluation_tasks_are_fixed_k_plus_k_and_independent_of_other_datasets(splits):
    tasks = EvaluationTasks(splits[1], 40, 5, 1, 1, eval_seed=123)
    again = EvaluationTasks(splits[1], 40, 5, 1, 1, eval_seed=123)
    other = EvaluationTasks(splits[1], 40, 5, 1, 1, eval_seed=124)
    assert torch.equal(tasks.idx.support, again.idx.support)
    assert not torch.equal(tasks.idx.support, other.idx.support)
    chunks = list(tasks.chunks(15))
    assert [c.n_tasks for c in chunks] == [15, 15, 10]
    assert chunks[0].x_support.shape[1] == 5 and chunks[0].x_query.shape[1] == 5  # K + K per class
    assert all((c.x_query[:, :, 0, 0, 0] == 2).all() for c in chunks)


def test_background_loader_yields_in_order_and_reraises_worker_errors(splits):
    sampler = EpisodeSampler(splits, 5, 1, 2)
    make = lambda i: sampler.batch(2, episode_generator(5, i))
    with BackgroundLoader(make, 3, 9, depth=2) as loader:
        got = [(i, b) for i, b in loader]
    assert [i for i, _ in got] == list(range(3, 9))
    assert all(torch.equal(b.x_query, make(i).x_query) for i, b in got)

    def failing(i):
        if i == 2:
            raise RuntimeError("disk on fire")
        return make(i)

    loader = BackgroundLoader(failing, 0, 5)
    with pytest.raises(RuntimeError, match="disk on fire"):
        list(loader)
    loader.close()


def test_synthetic_set_is_deterministic_with_the_real_split_sizes_and_disjoint_classes():
    a = synthetic_split("gratings", "train", SIZE, 4, seed=0)
    b = synthetic_split("gratings", "train", SIZE, 4, seed=0)
    c = synthetic_split("gratings", "train", SIZE, 4, seed=1)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.images.shape == (30 * 4, 3, SIZE, SIZE) and a.n_classes == 30  # Texture's 30 / 7 / 10
    for domain in SYNTHETIC_DOMAINS:
        parts = class_split(domain)
        flat = [i for p in parts.values() for i in p]
        assert len(flat) == len(set(flat))  # no class in two splits
        test = synthetic_split(domain, "test", SIZE, 2)
        assert test.n_classes == len(parts["test"])
        assert not set(test.class_names) & set(synthetic_split(domain, "val", SIZE, 2).class_names)


def _low_level_features(images: torch.Tensor) -> torch.Tensor:
    """Per image: share of spectral energy in the 4 strongest frequencies (stripes), share of
    background-coloured pixels (objects on a plain ground), saturation, brightness spread."""
    x = images.float() / 255
    grey = x.mean(1)
    spectrum = torch.fft.rfft2(grey - grey.mean((1, 2), keepdim=True)).abs().flatten(1) ** 2
    peak = spectrum.topk(4, dim=1).values.sum(1) / spectrum.sum(1)
    median = x.flatten(2).median(2).values[..., None, None]
    background = ((x - median).abs().amax(1) < 0.15).float().mean((1, 2))
    saturation = (x.max(1).values - x.min(1).values).mean((1, 2))
    return torch.stack([peak, background, saturation, grey.std((1, 2))], 1)


def test_synthetic_domains_are_visually_distinct():
    """A nearest-centroid rule on four low-level image statistics, fit on the train classes,
    tells the four domains apart on their unseen test classes."""
    train = [
        _low_level_features(synthetic_split(d, "train", 32, 3).images) for d in SYNTHETIC_DOMAINS
    ]
    test = [
        _low_level_features(synthetic_split(d, "test", 32, 3).images) for d in SYNTHETIC_DOMAINS
    ]
    mean, std = torch.cat(train).mean(0), torch.cat(train).std(0)
    centroids = torch.stack([((f - mean) / std).mean(0) for f in train])
    correct = sum(
        (torch.cdist((f - mean) / std, centroids).argmin(1) == d).sum().item()
        for d, f in enumerate(test)
    )
    assert correct / sum(len(f) for f in test) > 0.9
