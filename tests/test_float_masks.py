"""The fast meta-step's float masks: the same numbers as torch's comparison and clamp, and no
boolean tensor saved for the backward of any compiled meta-step (docs/PROTOCOL.md §3
"Meta-training"; the boolean stores cost 8 ns an element on a CPU)."""

import pytest
import torch

from hsmlbench.domains.regression.configs import run_config
from hsmlbench.domains.regression.tasks import sample_tasks
from hsmlbench.methods.base_learners import positive_mask
from hsmlbench.methods.builtin import build_model
from hsmlbench.methods.meta_learner import clamp_with_float_mask
from hsmlbench.seeding import task_generator

INT_VIEW = {torch.float32: torch.int32, torch.float64: torch.int64}


def _edge_values(dtype):
    info = torch.finfo(dtype)
    special = [0.0, -0.0, info.tiny, -info.tiny, info.tiny / 4, -info.tiny / 4, info.max]
    special += [-info.max, float("inf"), float("-inf"), 1.0, -1.0, 10.0, -10.0]
    random = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=dtype) * 20
    return torch.cat([torch.tensor(special, dtype=dtype), random])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_positive_mask_is_the_comparison_bit_for_bit(dtype):
    x = _edge_values(dtype)
    expected = (x > 0).to(dtype)
    got = positive_mask(x)
    assert got.dtype == dtype
    assert torch.equal(got.view(INT_VIEW[dtype]), expected.view(INT_VIEW[dtype]))  # ±0 too


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bound", [10.0, 0.5])
def test_clamp_with_float_mask_has_torchs_value_and_gradient(dtype, bound):
    x = torch.cat([_edge_values(dtype)[torch.isfinite(_edge_values(dtype))]])
    x = torch.cat([x, torch.tensor([bound, -bound], dtype=dtype)])  # exactly at ±bound
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    ours, reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    value = clamp_with_float_mask(ours, bound)
    expected = reference.clamp(-bound, bound)
    assert torch.equal(value.view(INT_VIEW[dtype]), expected.view(INT_VIEW[dtype]))
    (value * upstream).sum().backward()
    (expected * upstream).sum().backward()
    assert torch.equal(ours.grad, reference.grad)  # as numbers: a zero may differ in sign only
    at_bound = x.abs() == bound
    assert torch.equal(ours.grad[at_bound], upstream[at_bound])  # torch passes it at ±bound


def _dtypes_saved_for_backward(method, compile_step):
    """The dtypes of every tensor one meta-step saves for its backward."""
    config = run_config("T1", method, "5-shot", "smoke", meta_step="fast")
    torch.manual_seed(0)
    model = build_model(config)
    model.compile_meta_step = compile_step
    batch = sample_tasks(4, 5, 10, task_generator(2))
    with torch.no_grad():  # large support targets: MUMOMAML's ±10 clamp is active
        batch.y_support.mul_(50.0)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: (saved.append(t.dtype), t)[1], lambda t: t
    ):
        loss, _ = model.meta_loss(batch, config.inner_steps_train)
    loss.backward()
    return saved, model.meta_step_implementation


@pytest.mark.parametrize("method", ["maml", "hsml", "mumomaml"])
def test_compiled_fast_meta_step_saves_no_boolean_tensor(method, monkeypatch):
    monkeypatch.setenv("HSMLBENCH_COMPILE", "1")
    saved, implementation = _dtypes_saved_for_backward(method, compile_step=True)
    assert implementation == "fast, compiled"
    assert saved and torch.bool not in saved, saved


def test_the_saved_tensor_probe_sees_a_compiled_boolean():
    """The probe above can fail: a compiled comparison saved for backward is seen as bool."""

    def relu_by_comparison(h):
        return (h * (h > 0).to(h.dtype)).sum()

    saved = []
    h = torch.randn(16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: (saved.append(t.dtype), t)[1], lambda t: t
    ):
        torch.compile(relu_by_comparison, dynamic=False)(h * 2).backward()
    assert torch.bool in saved
