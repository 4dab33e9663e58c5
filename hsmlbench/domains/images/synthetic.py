"""A synthetic four-domain image set, drawn procedurally in memory, deterministic from a seed.

It stands in for the four real datasets so that every code path of T3 and T4 runs
on a CPU: four visually distinct domains, each with as many classes per split as the real
dataset in the same slot (Bird 64/16/20, Texture 30/7/10, ...). Classes differ in shape,
frequency, count or colour within a domain; instances vary pose, phase, position and noise.

    shapes   (slot of Bird):     one filled regular polygon on a plain background;
                                 class = number of sides × colour
    gratings (slot of Texture):  full-frame sinusoidal stripes in a random colour pair;
                                 class = orientation × frequency
    dots     (slot of Aircraft): a few discs on a grey background;
                                 class = count × colour × size
    clouds   (slot of Fungi):    band-pass filtered noise in two colours;
                                 class = spatial frequency band × palette

Results on it are labelled synthetic everywhere (tables ``T3-synthetic``, ``T4-synthetic``)
and are never compared with the paper's numbers.
"""

from __future__ import annotations

import functools
import hashlib
import math

import torch

from hsmlbench.domains.images.datasets import DATASETS, IMAGE_SIZE, SPLITS
from hsmlbench.domains.images.layout import ImageSplit, split_from_class_arrays

SYNTHETIC_DOMAINS: tuple[str, ...] = ("shapes", "gratings", "dots", "clouds")
SLOT = dict(
    zip(SYNTHETIC_DOMAINS, DATASETS)
)  # domain → the real dataset whose split sizes it copies
SYNTHETIC_LABELS = {d: f"{d.capitalize()} (synthetic)" for d in SYNTHETIC_DOMAINS}
IMAGES_PER_CLASS = 20  # ≥ K + 15 query images for 1- and 5-shot training episodes


def _seed(*parts) -> int:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:15], 16)


def _hsv(h: torch.Tensor, s: float = 0.75, v: float = 0.9) -> torch.Tensor:
    """Hue in [0, 1) → RGB [..., 3] at fixed saturation and value."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + h[..., None] * 6.0) % 6.0
    return v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2.0 - 1.0
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    return yy, xx


def _uniform(g: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def _class_table(domain: str) -> list[tuple]:
    """Every class of a domain as its parameters, in a fixed order."""
    if domain == "shapes":
        return [(sides, hue / 20) for sides in range(3, 8) for hue in range(20)]
    if domain == "gratings":
        return [
            (angle / 8 * math.pi, 2.0 + 1.5 * level) for angle in range(8) for level in range(6)
        ]
    if domain == "dots":
        return [
            (count, hue / 10, radius)
            for count in range(1, 6)
            for hue in range(10)
            for radius in (0.08, 0.16)
        ]
    if domain == "clouds":
        return [(1.5 + 1.2 * band, palette / 10) for band in range(10) for palette in range(10)]
    raise KeyError(f"unknown synthetic domain {domain!r}; known: {', '.join(SYNTHETIC_DOMAINS)}")


def _draw(domain: str, params: tuple, n: int, g: torch.Generator, size: int) -> torch.Tensor:
    """n instances of one class: float [n, 3, S, S] in [0, 1]."""
    yy, xx = _grid(size)
    noise = 0.04 * torch.randn(n, 3, size, size, generator=g)
    if domain == "shapes":
        sides, hue = params
        rot = _uniform(g, n, 0, 2 * math.pi)[:, None, None]
        radius = _uniform(g, n, 0.35, 0.6)[:, None, None]
        cy, cx = (_uniform(g, n, -0.25, 0.25)[:, None, None] for _ in range(2))
        dy, dx = yy - cy, xx - cx
        r = torch.sqrt(dy**2 + dx**2)
        sector = 2 * math.pi / sides
        local = torch.remainder(torch.atan2(dy, dx) - rot, sector) - sector / 2
        edge = radius * math.cos(math.pi / sides) / torch.cos(local)
        mask = torch.sigmoid((edge - r) * size)[:, None]
        fg = _hsv(torch.full((n,), hue) + _uniform(g, n, -0.01, 0.01))[:, :, None, None]
        bg = (0.15 + 0.25 * torch.rand(n, 1, generator=g)).expand(n, 3)[:, :, None, None]
        image = mask * fg + (1 - mask) * bg
    elif domain == "gratings":
        angle, cycles = params
        theta = (angle + _uniform(g, n, -0.08, 0.08))[:, None, None]
        freq = (cycles * _uniform(g, n, 0.95, 1.05))[:, None, None]
        phase = _uniform(g, n, 0, 2 * math.pi)[:, None, None]
        wave = 0.5 + 0.5 * torch.sin(
            math.pi * freq * (xx * torch.cos(theta) + yy * torch.sin(theta)) + phase
        )
        contrast = _uniform(g, n, 0.7, 1.0)[:, None, None, None]
        hue = torch.rand(n, generator=g)  # colour carries no class information here
        c1, c2 = _hsv(hue)[:, :, None, None], _hsv((hue + 0.5) % 1.0, 0.5, 0.35)[:, :, None, None]
        image = 0.5 + contrast * (wave[:, None] * c1 + (1 - wave[:, None]) * c2 - 0.5)
    elif domain == "dots":
        count, hue, radius = params
        image = (0.35 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)).expand(n, 3, size, size).clone()
        colour = _hsv(torch.full((n,), hue), 0.9, 0.95)[:, :, None, None]
        for _ in range(count):
            cy, cx = (_uniform(g, n, -0.75, 0.75)[:, None, None] for _ in range(2))
            rad = (radius * _uniform(g, n, 0.85, 1.15))[:, None, None]
            disc = torch.sigmoid((rad - torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)) * size)[
                :, None
            ]
            image = disc * colour + (1 - disc) * image
    else:  # clouds
        band, palette = params
        freq = torch.fft.fftfreq(size) * size  # cycles per image
        radius = torch.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2)
        weight = torch.exp(-((radius - band) ** 2) / (2 * (0.25 * band + 0.5) ** 2))
        spectrum = torch.complex(
            torch.randn(n, size, size, generator=g), torch.randn(n, size, size, generator=g)
        )
        field = torch.fft.ifft2(spectrum * weight).real
        field = (field - field.mean((1, 2), keepdim=True)) / (
            field.std((1, 2), keepdim=True) + 1e-6
        )
        t = torch.sigmoid(1.5 * field)[:, None]
        c1 = _hsv(torch.full((n,), palette), 0.7, 0.85)[:, :, None, None]
        c2 = _hsv(torch.full((n,), (palette + 0.35) % 1.0), 0.6, 0.3)[:, :, None, None]
        image = t * c1 + (1 - t) * c2
    return (image + noise).clamp(0.0, 1.0)


def class_split(domain: str, seed: int = 0) -> dict[str, list[int]]:
    """Which entries of the domain's class table make up its train / val / test classes."""
    sizes = DATASETS[SLOT[domain]].split_sizes
    order = torch.randperm(
        len(_class_table(domain)), generator=torch.Generator().manual_seed(_seed(seed, domain))
    )
    order = order[: sum(sizes)].tolist()
    a, b = sizes[0], sizes[0] + sizes[1]
    return {"train": order[:a], "val": order[a:b], "test": order[b:]}


@functools.lru_cache(maxsize=16)  # a grid of jobs in one process draws each split once
def synthetic_split(
    domain: str,
    split: str,
    image_size: int = IMAGE_SIZE,
    images_per_class: int = IMAGES_PER_CLASS,
    seed: int = 0,
) -> ImageSplit:
    """One split of one synthetic domain as uint8 images, the same for the same arguments."""
    if split not in SPLITS:
        raise KeyError(f"unknown split {split!r}; known: {SPLITS}")
    table = _class_table(domain)
    per_class, names = [], []
    for index in class_split(domain, seed)[split]:
        g = torch.Generator().manual_seed(_seed(seed, domain, index, image_size))
        images = _draw(domain, table[index], images_per_class, g, image_size)
        per_class.append((images * 255).round().to(torch.uint8))
        names.append(f"{domain}-{index:03d}")
    return split_from_class_arrays(domain, split, per_class, names)
