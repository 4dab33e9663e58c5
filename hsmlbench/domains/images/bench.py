"""One meta-iteration of the T3 protocol (1-shot, meta-batch 4, 5 second-order steps), timed.

The input factory ``meta_iteration`` is shared by the suite (``suites/test_T3.py``, through
pytest-benchmark) and by ``python -m hsmlbench.domains.images.bench`` on a GPU, which prints
iterations per second, peak GPU memory and the projected wall time of a full T3 run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from hsmlbench.domains.images.configs import image_run_config
from hsmlbench.domains.images.domain import ImageDomain
from hsmlbench.domains.images.episodes import EpisodeSampler, episode_generator
from hsmlbench.domains.images.models import build_image_model
from hsmlbench.domains.images.per_task_reference import per_task_image_maml_meta_loss
from hsmlbench.domains.images.synthetic import SYNTHETIC_DOMAINS, synthetic_split


def meta_iteration(method: str, image_size: int = 84, device: str = "cpu", seed: int = 0):
    """(step, model, batch, config): ``step()`` runs one meta-iteration and returns the loss."""
    config = dataclasses.replace(
        image_run_config("T3", method, "1-shot", "paper"), image_size=image_size
    )
    splits = [
        synthetic_split(d, "train", image_size, config.k_shot + config.n_query_train)
        for d in SYNTHETIC_DOMAINS
    ]
    sampler = EpisodeSampler(splits, config.n_way, config.k_shot, config.n_query_train)
    batch = sampler.batch(config.meta_batch, episode_generator(seed, 0)).to(device)
    torch.manual_seed(seed)
    model = build_image_model(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.outer_lr)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = ImageDomain().meta_step(model, batch, config)
        optimizer.step()
        return loss

    return step, model, batch, config


def check_against_per_task_loop(model, batch, config, steps: int = 1) -> tuple[float, float]:
    """MAML's batched meta-loss and the per-task loop's on the same batch (before timing).

    One inner step by default: in float32 the two agree to ~1e-7 after one step, but five
    steps at the initialization amplify rounding (a 1e-7 relative change of θ0 moves the
    5-step loss by ~3e-5 relative, and float32 runs of either path land ~1e-3 apart at 84×84).
    Equality through all five steps is tested in float64 (tests/test_images_models.py).
    """
    batched, _ = model.meta_loss(batch, steps)
    reference = per_task_image_maml_meta_loss(
        list(model.theta0),
        batch,
        config.inner_lr,
        steps,
        config.k_shot,
        model.learner.bn_offsets,
        model.learner.eps,
    )
    return batched.item(), reference.item()


def time_meta_iteration(method: str, image_size: int, device: str, repeats: int = 20) -> dict:
    step, model, batch, config = meta_iteration(method, image_size, device)
    if method == "maml":
        # The check compares two orderings of the same float32 math; TF32 convolutions (cuDNN's
        # default on Ampere and newer) round differently per path and the inner loop amplifies
        # it (0.57 % apart on an H100), so the check runs in full float32, the timing does not.
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            ours, reference = check_against_per_task_loop(model, batch, config)
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
        assert abs(ours - reference) <= 1e-4 * abs(reference), (ours, reference)
    for _ in range(3):
        step()  # warm-up (cuDNN autotuning, allocator)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            step()
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1000 / repeats
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        t0 = time.perf_counter()
        for _ in range(repeats):
            step()
        seconds = (time.perf_counter() - t0) / repeats
        peak = None
    iterations = image_run_config("T3", method, "1-shot", "paper").budget.iterations
    return {
        "method": method,
        "image_size": image_size,
        "device": device,
        "seconds_per_iteration": seconds,
        "iterations_per_second": 1 / seconds,
        "peak_gpu_mb": peak,
        "projected_training_hours": iterations * seconds / 3600,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--methods", nargs="+", default=["maml", "mumomaml", "hsml"])
    parser.add_argument("--image-size", type=int, default=84)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        print(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}))
    for method in args.methods:
        print(
            json.dumps(time_meta_iteration(method, args.image_size, args.device, args.repeats)),
            flush=True,
        )


if __name__ == "__main__":
    main()
