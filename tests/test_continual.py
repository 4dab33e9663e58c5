import dataclasses

import pytest
import torch

from hsmlbench.configs import Budget
from hsmlbench.domains.regression.configs import ContinualSettings, HSMLSettings, run_config
from hsmlbench.domains.regression.tasks import sample_tasks
from hsmlbench.methods.continual import ContinualHSML, should_grow
from hsmlbench.run.training import train
from hsmlbench.seeding import task_generator

RULE = ContinualSettings(grow=True, window=1000, growth_ratio=1.25, cooldown=8000)


def _fired(window_losses, rule=RULE):
    """Drives should_grow window by window the way training does; returns addition iterations."""
    last, fired = None, []
    for n in range(1, len(window_losses) + 1):
        done = n * rule.window
        if should_grow(window_losses[:n], done, last, rule):
            last = done
            fired.append(done)
    return fired


def test_trigger_fires_exactly_on_a_jump_above_mu():
    losses = [5.0, 3.0, 2.0, 2.0, 2.49, 2.0, 2.51]  # 2.49 < 1.25·2.0 = 2.5 < 2.51
    assert _fired(losses) == [7000]


def test_trigger_respects_the_cooldown():
    # jumps after windows 3, 6 (too soon after 3: only 3,000 iterations), 12 (9,000 after 3)
    losses = [2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 6.0]
    assert _fired(losses) == [3000, 12000]
    # exactly 8,000 iterations after the last addition is allowed
    losses = [2.0, 2.0, 3.0] + [3.0] * 7 + [4.0]
    assert _fired(losses) == [3000, 11000]


def test_no_trigger_without_a_previous_window():
    assert not should_grow([10.0], 1000, None, RULE)


def test_adding_a_far_cluster_keeps_outputs_and_optimizer_state():
    torch.manual_seed(0)
    model = ContinualHSML(HSMLSettings(clusters=(2, 2)), RULE, inner_lr=0.001).double()
    optimizer = torch.optim.Adam(model.optimizer_groups(), lr=1e-3)
    batch = sample_tasks(6, 5, 10, task_generator(0), dtype=torch.float64)
    loss, _ = model.meta_loss(batch, 2)
    loss.backward()
    optimizer.step()
    # An empty level-1 node still sends q·tanh(u_j) to level-2 node j through the level-2 bias
    # u_j (docs/PROTOCOL.md §3's formula), so outputs are exactly unchanged only while u = 0.
    with torch.no_grad():
        model.tree.ub.zero_()
    before_state = {
        p: {k: v.clone() for k, v in optimizer.state[p].items()} for p in model.parameters()
    }
    before = model.task_context(batch)
    new = model.add_cluster()
    optimizer.add_param_group({"params": new})
    with torch.no_grad():
        new[0].fill_(1e3)  # far from every task vector: its assignment is ~0
    after = model.task_context(batch)
    assert model.tree.n_clusters == 3
    assert after.assignments["level1"][:, 2].max() < 1e-12
    for a, b in zip(before.init_params, after.init_params):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(after.assignments["level1"][:, :2], before.assignments["level1"])
    for p, state in before_state.items():
        for key, value in state.items():
            assert torch.equal(optimizer.state[p][key], value)
    assert all(not optimizer.state[p] for p in new)
    # the next step gives the new cluster a fresh Adam state of its own
    model.meta_loss(batch, 2)[0].backward()
    optimizer.step()
    assert all(optimizer.state[p]["step"] == 1 for p in new)


@pytest.mark.parametrize("stop_after", [10, 13])
def test_resume_across_a_growth_event_equals_an_uninterrupted_run(tmp_path, stop_after):
    config = run_config("T2", "hsml-d", "5-shot", "smoke")
    # growth_ratio 0 fires at every window end the cool-down allows: at 8, 16 and 24
    config = dataclasses.replace(
        config,
        budget=Budget("test", 24, 20, 5, "unit test"),
        continual=ContinualSettings(grow=True, window=4, growth_ratio=0.0, cooldown=8),
    )
    full = train(config, seed=0, run_dir=tmp_path / "full", progress=False)
    assert [e["iteration"] for e in full.events] == [8, 16, 24]
    assert full.model.tree.n_clusters == 5
    train(config, seed=0, run_dir=tmp_path / "cut", progress=False, stop_after=stop_after)
    resumed = train(config, seed=0, run_dir=tmp_path / "cut", resume=True, progress=False)
    assert resumed.model.tree.n_clusters == 5
    assert resumed.losses == full.losses and resumed.events == full.events
    for (name, a), (_, b) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items()
    ):
        assert torch.equal(a, b), name
