"""The kernel benchmarks' helpers that run without a GPU: how many input sets a device-time
loop cycles through so that it measures DRAM traffic, not L2 hits."""

import pytest
from hsmlbench.kernels.bench import BENCH_SIZES, gate_inputs, rotation_sets

H100_L2 = 50 << 20


def test_image_size_gate_rotates_through_more_than_twice_the_l2():
    s = BENCH_SIZES["image-B32"]
    one_set = sum(t.nbytes for t in gate_inputs(s.B, s.Z, s.P))
    assert one_set > 0.6 * H100_L2  # W alone (33 MB) fits in the L2: why rotation is needed
    sets = rotation_sets(one_set, H100_L2)
    assert sets * one_set >= 2 * H100_L2
    assert (sets - 2) * one_set < 2 * H100_L2  # and not many more than needed


@pytest.mark.parametrize("one_set", [1, 4096, 100_000])
def test_tiny_inputs_are_capped(one_set):
    assert rotation_sets(one_set, H100_L2) == 16
    assert rotation_sets(one_set, H100_L2, most=4) == 4


def test_inputs_larger_than_the_l2_still_rotate_and_empty_ones_do_not():
    assert rotation_sets(3 * H100_L2, H100_L2) == 2  # one set after another: never cached
    assert rotation_sets(0, H100_L2) == 1


@pytest.mark.parametrize("direction", ["fwd", "bwd"])
@pytest.mark.parametrize("B", [4, 32])
def test_sweep_candidates_start_with_the_default_and_keep_the_batch_tile(direction, B):
    import torch
    from hsmlbench.kernels._gated_init_triton import _config
    from hsmlbench.kernels.sweep import candidates

    found = candidates(B, torch.float32, direction)
    assert found[0] == _config(B, torch.float32, backward=direction == "bwd")
    assert len(found) == len({tuple(sorted(c.items())) for c in found}) >= 12
    assert {c["BB"] for c in found} == {found[0]["BB"]} and found[0]["BB"] >= B


def test_sweep_without_a_gpu_says_so(capsys):
    import torch
    from hsmlbench.kernels.sweep import main

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the sweep would run")
    assert main([]) == 2
    assert "CUDA GPU" in capsys.readouterr().err
