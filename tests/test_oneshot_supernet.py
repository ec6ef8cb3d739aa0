"""The one-shot search core (issue 27): supernets, partial channels, discretisation, the second-order
alpha gradient, settings, resume."""
import io

import numpy as np
import pytest
import torch
from torch.func import functional_call
from torch.nn import functional as F

from jointnas.errors import UsageError
from jointnas.families.cell import EDGES, OPS, CellFamily
from jointnas.oneshot import OneShotSearch, OneShotSettings
from jointnas.oneshot.mixed import PartialMixedOp, channel_shuffle
from jointnas.oneshot.nb201_supernet import NB201Supernet


def tiny(strategy="darts", space="nb201", **changes):
    base = dict(channels=4, cells=1, epochs=4, batch_size=4, warmup_epochs=0)
    if space == "darts":
        base.update(cells=3)
    return OneShotSettings.for_strategy(strategy, space).override({**base, **changes})


def batches(n, seed, size=4, channels=1, res=8, classes=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, channels, res, res, generator=g, dtype=dtype),
             torch.randint(0, classes, (size,), generator=g)) for _ in range(n)]


def one_hot_arch(rows, names):
    """Alphas whose softmax is exactly one-hot: 0 on the chosen op, -inf elsewhere."""
    a = torch.full((len(rows), len(names)), float("-inf"))
    for e, op in enumerate(rows):
        a[e, names.index(op)] = 0.0
    return a


def randomise_(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def test_nb201_supernet_with_one_hot_alphas_computes_what_the_discrete_cell_network_computes():
    ops = ["nor_conv_3x3", "skip_connect", "avg_pool_3x3", "none", "nor_conv_1x1", "nor_conv_3x3"]
    arch = dict(zip(EDGES, ops))
    net = NB201Supernet(4, 2, num_classes=5, in_channels=3)
    randomise_(net, 0)
    alphas = {"normal": one_hot_arch(ops, list(OPS))}
    net.train()
    for x, _ in batches(3, 1, channels=3):  # non-trivial running statistics
        net(x, alphas)
    family = CellFamily.from_spec({"network": {"channels": 4, "cells": 2}})
    discrete = family.build(arch, num_classes=5, in_channels=3, input_size=8)
    source = net.state_dict()
    target = discrete.state_dict()
    for key in target:
        parts = key.split(".")
        if len(parts) > 3 and parts[2] == "edges":  # features.<i>.edges.<e>.<rest> -> ...ops.<k>.<rest>
            op = ops[int(parts[3])]
            mapped = ".".join(parts[:4] + ["ops", str(OPS.index(op))] + parts[4:])
            if mapped in source:
                target[key] = source[mapped]
            else:  # the discrete edge's BN scale and shift: the supernet's edges have none (identity)
                assert parts[-1] in ("weight", "bias") and "BatchNorm" in type(
                    discrete.get_submodule(".".join(parts[:-1]))).__name__
        else:
            target[key] = source[key]
    discrete.load_state_dict(target)
    net.eval(), discrete.eval()
    x = batches(1, 2, size=6, channels=3)[0][0]
    with torch.no_grad():
        torch.testing.assert_close(net(x, alphas), discrete(x), rtol=1e-5, atol=1e-6)


def test_partial_channels_keep_shapes_and_pass_gradients_to_every_weight_alpha_and_multi_edge_beta():
    net = NB201Supernet(8, 1, num_classes=3, in_channels=1, k=4, edge_normalisation=True)
    alphas = {"normal": torch.randn(6, 5, requires_grad=True), "normal_beta": torch.randn(6, requires_grad=True)}
    x, y = batches(1, 0, size=4)[0]
    out = net(x, alphas)
    assert out.shape == (4, 3)
    F.cross_entropy(out, y).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert (alphas["normal"].grad.abs().sum(1) > 0).all()
    beta_grad = alphas["normal_beta"].grad
    # node 1 has one incoming edge: its normalised beta is 1 whatever beta is, so no gradient
    assert beta_grad[0] == 0 and (beta_grad[1:] != 0).all()


def test_partial_channel_op_sends_a_quarter_through_the_ops_and_shuffles_the_rest_back_in():
    conv = torch.nn.Conv2d(2, 2, 3, 2, 1, bias=False)
    op = PartialMixedOp([conv], k=4, stride=2)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    out = op(x, torch.ones(1))
    assert out.shape == (2, 8, 3, 3)
    unshuffled = channel_shuffle(out, 2)  # shuffling in 8 // 4 groups undoes a shuffle in 4 groups
    torch.testing.assert_close(unshuffled[:, :2], conv(x[:, :2]))
    torch.testing.assert_close(unshuffled[:, 2:], F.max_pool2d(x[:, 2:], 2))
    out.sum().backward()
    assert conv.weight.grad.abs().sum() > 0 and (x.grad.abs().sum((0, 2, 3)) > 0).all()


def _search_with_alphas(normal, settings=None):
    search = OneShotSearch("nb201", settings or tiny(), num_classes=3, in_channels=1, resolution=8)
    with torch.no_grad():
        search.arch["normal"].copy_(torch.as_tensor(np.log(normal), dtype=torch.float32))
    return search


def _weights(ops, second=None, strength=0.6):
    w = np.full((len(ops), len(OPS)), (1 - strength) / (len(OPS) - 1))
    for e, op in enumerate(ops):
        w[e, OPS.index(op)] = strength
    if second:
        for e, (op, value) in second.items():
            w[e, OPS.index(op)] = value
        w /= w.sum(1, keepdims=True)
    return w


def test_nb201_discretisation_keeps_each_edges_argmax_op_none_included():
    ops = ["nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3", "none"]
    search = _search_with_alphas(_weights(ops))
    assert search.derive() == dict(zip(EDGES, ops))
    assert search.skip_count() == 1 and not search.collapsed()


def test_all_skip_alphas_are_counted_as_collapse_and_the_skip_cap_keeps_the_two_strongest_skips():
    strengths = [0.5, 0.9, 0.6, 0.8, 0.7, 0.55]
    w = np.stack([_weights(["skip_connect"], {0: ("nor_conv_1x1", (1 - s) / 2)}, s)[0] for s in strengths])
    assert OneShotSearch  # the monitor counts every skip; only the early-stop remedy calls it collapse
    plain = _search_with_alphas(w)
    assert plain.skip_count() == 6 and not plain.collapsed()
    assert _search_with_alphas(w, tiny(remedy="early-stop")).collapsed()
    capped = _search_with_alphas(w, tiny(remedy="skip-cap", max_skips=2)).derive()
    assert [e for e in EDGES if capped[e] == "skip_connect"] == ["edge_2_0", "edge_3_0"]
    assert all(capped[e] == "nor_conv_1x1" for e in EDGES if e not in ("edge_2_0", "edge_3_0"))


def test_second_order_alpha_gradient_matches_finite_differences_of_the_unrolled_validation_loss():
    # r small enough that the finite-difference Hessian-vector product is exact to double precision:
    # this checks the implementation; the reference r = 0.01 is DARTS's own approximation
    torch.manual_seed(0)
    settings = tiny("darts-2nd", channels=2, w_weight_decay=1e-2, unrolled_r=1e-6)
    search = OneShotSearch("nb201", settings, num_classes=3, in_channels=1, resolution=8)
    net = search.net.double()
    for p in search.arch.values():
        p.data = p.data.double().normal_() * 0.5
    (xt, yt), (xv, yv), (x0, y0) = batches(3, 5, size=8, dtype=torch.float64)
    # one real step first so that the virtual step also carries a momentum buffer
    search.w_optimizer.zero_grad()
    F.cross_entropy(net(x0, {k: v.detach() for k, v in search.arch.items()}), y0).backward()
    search.w_optimizer.step()
    eta = 0.05
    grads, _ = search.architect.alpha_gradients(xt, yt, xv, yv, eta)

    group = search.w_optimizer.param_groups[0]
    params = dict(net.named_parameters())

    def unrolled_valid_loss(alpha):
        arch = {"normal": alpha}
        loss = F.cross_entropy(functional_call(net, (params,), (xt, arch)), yt)
        g = torch.autograd.grad(loss, list(params.values()))
        moved = {n: p - eta * (group["momentum"] * search.w_optimizer.state[p]["momentum_buffer"] + gp
                               + group["weight_decay"] * p) for (n, p), gp in zip(params.items(), g)}
        return F.cross_entropy(functional_call(net, (moved,), (xv, arch)), yv).item()

    alpha = search.arch["normal"].detach().clone()
    numeric = torch.zeros_like(alpha)
    h = 1e-5
    for idx in np.ndindex(*alpha.shape):
        plus, minus = alpha.clone(), alpha.clone()
        plus[idx] += h
        minus[idx] -= h
        numeric[idx] = (unrolled_valid_loss(plus) - unrolled_valid_loss(minus)) / (2 * h)
    first_order = torch.autograd.grad(F.cross_entropy(net(xv, {"normal": search.arch["normal"]}), yv),
                                      search.arch["normal"])[0]
    assert (first_order - numeric).abs().max() > 1e-4  # the unrolled term matters here
    torch.testing.assert_close(grads[0], numeric, rtol=1e-4, atol=1e-7)


def test_settings_defaults_are_the_reference_values_of_darts_pc_darts_and_nas_bench_201():
    d = OneShotSettings.for_strategy("darts", "darts")
    assert (d.channels, d.cells, d.epochs, d.batch_size) == (16, 8, 50, 64)
    assert (d.w_lr, d.w_lr_min, d.w_momentum, d.w_weight_decay, d.grad_clip) == (0.025, 0.001, 0.9, 3e-4, 5.0)
    assert (d.alpha_lr, d.alpha_betas, d.alpha_weight_decay) == (3e-4, (0.5, 0.999), 1e-3)
    assert not d.second_order and d.partial_channels == 1 and not d.edge_normalisation and d.warmup_epochs == 0
    assert d.pool_batchnorm  # the reference MixedOp follows each pooling op by a BN without affine
    d2 = OneShotSettings.for_strategy("darts-2nd", "darts")
    assert d2.second_order and d2.unrolled_r == 0.01
    pc = OneShotSettings.for_strategy("pc-darts", "darts")
    assert (pc.partial_channels, pc.edge_normalisation, pc.batch_size, pc.w_lr, pc.alpha_lr, pc.warmup_epochs) == \
        (4, True, 256, 0.1, 6e-4, 15)
    nb = OneShotSettings.for_strategy("darts", "nb201")
    assert (nb.channels, nb.cells, nb.epochs, nb.batch_size, nb.w_lr, nb.w_lr_min) == (16, 5, 50, 64, 0.025, 0.001)
    assert (nb.w_weight_decay, nb.w_nesterov, nb.alpha_lr, nb.alpha_weight_decay) == (5e-4, True, 3e-4, 1e-3)
    quick = OneShotSettings.for_strategy("pc-darts", "nb201", quick=True)
    assert quick.epochs < 50 and quick.warmup_epochs == round(quick.epochs * 15 / 50)
    with pytest.raises(UsageError, match="unknown one-shot setting"):
        nb.override({"chanels": 8})


@pytest.mark.parametrize("strategy", ["darts-2nd", "pc-darts"])
def test_a_search_loaded_from_its_state_dict_continues_exactly_as_the_uninterrupted_one(strategy):
    settings = tiny(strategy, channels=4 if strategy == "darts-2nd" else 8)
    data = [batches(4, epoch) for epoch in range(3)]

    def run(search, epochs):
        for epoch in epochs:
            search.train_epoch(data[epoch][:2], data[epoch][2:], epoch)

    straight = OneShotSearch("nb201", settings, 3, 1, 8, seed=3)
    run(straight, range(3))
    first = OneShotSearch("nb201", settings, 3, 1, 8, seed=3)
    run(first, [0])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = OneShotSearch("nb201", settings, 3, 1, 8, seed=99)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    run(resumed, [1, 2])
    for k in straight.arch:
        assert torch.equal(straight.arch[k], resumed.arch[k])
    for (name, a), b in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(UsageError, match="does not follow"):
        resumed.train_epoch(data[0][:2], data[0][2:], 1)


def _darts_edge(pair_index, source):
    from jointnas.oneshot.darts_supernet import NODE_EDGES

    return NODE_EDGES[pair_index // 2][source]


def test_darts_supernet_with_one_hot_alphas_computes_what_the_discrete_darts_network_computes():
    from jointnas.families.darts_genotypes import PC_DARTS
    from jointnas.families.darts_net import Network, cell_plan
    from jointnas.families.darts_ops import PRIMITIVES
    from jointnas.oneshot.darts_supernet import EDGE_COUNT, DartsSupernet

    torch.manual_seed(0)
    # without the reference's BN after pooling, which the discrete network does not have
    net = DartsSupernet(4, 3, num_classes=5, in_channels=3, pool_batchnorm=False)
    randomise_(net, 0)
    alphas = {}
    for kind in ("normal", "reduce"):
        rows = ["none"] * EDGE_COUNT  # edges the genotype drops add exact zeros
        for p, (op, source) in enumerate(getattr(PC_DARTS, kind)):
            rows[_darts_edge(p, source)] = op
        alphas[kind] = one_hot_arch(rows, list(PRIMITIVES))
    net.train()
    for x, _ in batches(3, 1, channels=3, res=12):
        net(x, alphas)
    discrete = Network(PC_DARTS, 4, 3, num_classes=5, in_channels=3)
    discrete_specs = cell_plan(4, 3)
    source, target = net.state_dict(), discrete.state_dict()
    copied = 0
    for key in target:
        parts = key.split(".")
        if parts[0] == "cells" and parts[2] == "ops":  # cells.<i>.ops.<p>.<rest> -> cells.<i>.edges.<e>.ops.<k>.<rest>
            pairs = PC_DARTS.reduce if discrete_specs[int(parts[1])].reduction else PC_DARTS.normal
            op, src = pairs[int(parts[3])]
            mapped = ".".join(["cells", parts[1], "edges", str(_darts_edge(int(parts[3]), src)), "ops",
                               str(PRIMITIVES.index(op))] + parts[4:])
        else:
            mapped = key
        if mapped in source:
            target[key], copied = source[mapped], copied + 1
        else:  # BN scale and shift of the discrete network: none in the supernet's edges and inputs
            assert parts[-1] in ("weight", "bias") and "BatchNorm" in type(
                discrete.get_submodule(".".join(parts[:-1]))).__name__, key
    assert copied > len(target) // 2
    discrete.load_state_dict(target)
    net.eval(), discrete.eval()
    x = batches(1, 2, size=6, channels=3, res=12)[0][0]
    with torch.no_grad():
        torch.testing.assert_close(net(x, alphas), discrete(x), rtol=1e-5, atol=1e-6)


def test_darts_partial_channel_supernet_keeps_shapes_and_passes_gradients_to_weights_alphas_and_betas():
    from jointnas.oneshot.darts_supernet import DartsSupernet

    net = DartsSupernet(8, 3, num_classes=3, in_channels=1, k=4, edge_normalisation=True)
    alphas = {name: torch.randn(shape, requires_grad=True) for name, shape in net.arch_shapes().items()}
    x, y = batches(1, 0, size=4, res=10)[0]  # 10 -> 5 -> 3: odd sides through the strided bypass too
    out = net(x, alphas)
    assert out.shape == (4, 3)
    F.cross_entropy(out, y).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name, a in alphas.items():
        assert (a.grad != 0).all(), name


def test_darts_discretisation_keeps_the_two_strongest_inputs_per_node_with_betas_and_the_published_cell():
    from jointnas.families.darts_genotypes import DARTS_V2, arch_of
    from jointnas.families.darts_ops import PRIMITIVES
    from jointnas.oneshot.spaces import search_space

    space = search_space("darts")
    weights = {}
    for kind in ("normal", "reduce"):
        w = np.full((14, 8), 0.1)
        w[:, PRIMITIVES.index("none")] = 0.25  # none is strongest everywhere and never counts
        for p, (op, source) in enumerate(getattr(DARTS_V2, kind)):
            w[_darts_edge(p, source), PRIMITIVES.index(op)] = 0.3 - 0.01 * (p % 2)
        weights[kind] = w / w.sum(1, keepdims=True)
    assert space.derive(weights) == arch_of(DARTS_V2)
    assert space.skip_count(weights) == 2
    # betas reorder the edges: node 2's edge from input 1 loses to nothing, but node 3's input 2 wins
    betas = np.ones(14)
    betas[_darts_edge(2, 0)] = 0.1  # node 3's first pair, sep3 from input 0
    betas[_darts_edge(2, 2)] = 3.0  # node 3's edge from node 2, whose best op is a weak 0.1 pool
    weights["normal_beta"] = betas
    normal = space.genotype(weights).normal
    assert normal[2:4] == [("max_pool_3x3", 2), ("sep_conv_3x3", 1)]
    assert normal[:2] == DARTS_V2.normal[:2] and normal[4:] == DARTS_V2.normal[4:]
    capped = space.genotype({k: v for k, v in weights.items() if k != "normal_beta"}, skip_cap=1).normal
    assert sum(op == "skip_connect" for op, _ in capped) == 1


def test_a_tiny_darts_space_search_trains_derives_and_resumes_exactly():
    settings = tiny("pc-darts", space="darts", channels=8)
    data = [batches(2, epoch, res=8) for epoch in range(2)]
    straight = OneShotSearch("darts", settings, 3, 1, 8, seed=1)
    for epoch in range(2):
        metrics = straight.train_epoch(data[epoch][:1], data[epoch][1:], epoch)
    assert set(metrics) == {"train_loss", "train_acc", "valid_loss", "valid_acc"}
    first = OneShotSearch("darts", settings, 3, 1, 8, seed=1)
    first.train_epoch(data[0][:1], data[0][1:], 0)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = OneShotSearch("darts", settings, 3, 1, 8, seed=2)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    resumed.train_epoch(data[1][:1], data[1][1:], 1)
    assert all(torch.equal(straight.arch[k], resumed.arch[k]) for k in straight.arch)
    assert straight.derive() == resumed.derive() and set(straight.alphas()) == {
        "normal", "reduce", "normal_beta", "reduce_beta"}
