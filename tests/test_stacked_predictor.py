"""FBNetV3's predictor trained as one stacked computation (kind ``fbnetv3``) and its rank blend
with the forest (kind ``blend``): the same arithmetic as training each member alone, warm refits,
the pretraining choice, and checkpoints that score without torch."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from torch.nn import functional as F

from jointnas import catalog
from jointnas.surrogates.base import PredictorError
from jointnas.surrogates.blend import BlendSurrogate, average_ranks
from jointnas.surrogates.mlp import batched, fullbatch
from jointnas.surrogates.mlp.fbnetv3 import StackedPredictor
from jointnas.surrogates.mlp.network import Member

REPO = Path(__file__).resolve().parents[1]
M, A, R, H, N = 3, 7, 4, 8, 11


def _stacked_and_members():
    """Random stacked weights, and the same weights loaded into one torch Member per member."""
    rng = np.random.default_rng(0)
    w = batched.init_encoder(rng, M, A, H, 2)
    w.update(batched.init_head(rng, M, H, R, 2))
    members = []
    for m in range(M):
        sd = {"encoder.body.0.weight": w["enc0.w"][m].T, "encoder.body.0.bias": w["enc0.b"][m, 0],
              "encoder.body.2.weight": w["enc1.w"][m].T, "encoder.body.2.bias": w["enc1.b"][m, 0],
              "head.body.0.weight": np.concatenate([w["head0.wz"][m], w["head0.wr"][m]]).T,
              "head.body.0.bias": w["head0.b"][m, 0],
              "head.body.2.weight": w["head1.w"][m].T, "head.body.2.bias": w["head1.b"][m, 0],
              "head.out.weight": w["out.w"][m].T, "head.out.bias": w["out.b"][m, 0]}
        member = Member(A, R, H, 2, 2)
        member.load_state_dict({k: torch.tensor(np.ascontiguousarray(v)) for k, v in sd.items()})
        members.append(member)
    x = rng.random((N, A + R)).astype(np.float32)
    return w, members, x


def _member_outputs(members, x):
    with torch.no_grad():
        return np.stack([m(torch.from_numpy(x)).numpy() for m in members])


def test_the_stacked_ensemble_scores_rows_as_each_member_alone_does():
    w, members, x = _stacked_and_members()
    ours = batched.scores(w, x[:, :A], x[:, A:] * 2 - 1)
    np.testing.assert_allclose(ours, _member_outputs(members, x), atol=1e-6)


def test_one_stacked_training_step_is_each_members_own_adamw_step_on_huber_loss():
    w, members, x = _stacked_and_members()
    z = np.random.default_rng(1).normal(size=N).astype(np.float32)
    config = dict(huber_delta=0.5, lr=1e-2, weight_decay=1e-3, frozen_steps=0, full_steps=1, warm_steps=1)
    trainer = fullbatch.Trainer(w, config)
    trainer.fit(x[:, :A], x[:, A:] * 2 - 1, z)
    for member in members:
        opt = torch.optim.AdamW(member.parameters(), lr=1e-2, weight_decay=1e-3)
        loss = F.huber_loss(member(torch.from_numpy(x)), torch.from_numpy(z), delta=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = trainer.arrays()
    for m, member in enumerate(members):
        np.testing.assert_allclose(after["enc0.w"][m], member.encoder.body[0].weight.detach().numpy().T, atol=1e-6)
        np.testing.assert_allclose(after["out.b"][m, 0], member.head.out.bias.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(batched.scores(after, x[:, :A], x[:, A:] * 2 - 1), _member_outputs(members, x),
                               atol=1e-5)


# ---------------------------------------------------------------------- a task with a known answer
@pytest.fixture(scope="module")
def task():
    """NB201 cells scored by a known function of their edges (conv edges help, more near the
    input) plus a little noise: 64 training rows, 600 held out."""
    space = catalog.load_space("nb201")
    pool = space.sample(1200, seed=0)
    x = space.encode(pool).astype(np.float32)
    weights = np.random.default_rng(3).normal(size=space.arch_width)
    truth = 1 / (1 + np.exp(-(x[:, :space.arch_width] @ weights) / 3))
    y = 0.4 + 0.5 * truth + np.random.default_rng(4).normal(0, 0.01, len(x))
    costs = space.family.costs([c.arch for c in pool])
    return space, pool, x, np.clip(y, 0, 1), costs


def _tau(surrogate, x, y):
    return kendalltau(y, surrogate.predict_encoded(x)[0])[0]


def test_a_warm_refit_after_rows_were_added_ranks_at_least_as_well_as_a_cold_fit(task):
    space, pool, x, y, costs = task
    base = StackedPredictor(space, pretraining="on").pretrain(pool, costs)
    warm = StackedPredictor.from_state(base.state(), space).fit(x[:32], y[:32])
    for n in range(33, 61):
        warm.update(x[:n], y[:n])
    assert warm.info["fit"]["kind"] == "warm" and warm.rows == {"full": 32, "last": 60}
    cold = StackedPredictor.from_state(base.state(), space).fit(x[:60], y[:60])
    held_out = slice(600, None)
    warm_tau, cold_tau = _tau(warm, x[held_out], y[held_out]), _tau(cold, x[held_out], y[held_out])
    assert cold_tau > 0.5   # the task is learnable from 60 rows
    assert warm_tau >= cold_tau - 0.01, (warm_tau, cold_tau)


def test_update_fits_from_scratch_once_the_rows_reached_refit_growth_times_the_last_full_fit(task):
    space, pool, x, y, costs = task
    p = StackedPredictor(space, pretraining="off", refit_growth=1.5).fit(x[:20], y[:20])
    p.update(x[:29], y[:29])
    assert p.info["fit"]["kind"] == "warm"
    p.update(x[:30], y[:30])
    assert p.info["fit"]["kind"] == "full" and p.rows == {"full": 30, "last": 30}


def test_auto_pretraining_is_decided_by_fold_tau_from_enough_rows_and_kept_in_the_checkpoint(task, tmp_path):
    space, pool, x, y, costs = task
    p = StackedPredictor(space, auto_from=24).pretrain(pool, costs)
    assert "3-fold Kendall tau decides from 24" in p.pretraining_note(len(pool))
    p.fit(x[:16], y[:16])
    assert p.info["pretraining"]["why"].startswith("fewer than 24 rows to compare; scores follow FLOPs/params")
    p.fit(x[:40], y[:40])
    used, why = p.info["pretraining"]["used"], p.info["pretraining"]["why"]
    pre, no = (float(v) for v in why.removeprefix("3-fold Kendall tau ").replace(" not", "").split(" pretrained vs "))
    assert used == (pre >= no)
    p.save(tmp_path / "p.pt")
    assert catalog.load_surrogate(tmp_path / "p.pt").info["pretraining"] == p.info["pretraining"]
    off = StackedPredictor(space, pretraining="off").pretrain(pool, costs).fit(x[:40], y[:40])
    assert not off.pretrained and off.info["pretraining"] == {"used": False, "why": "pretraining='off'"}


def test_a_bad_pretraining_option_is_refused_with_the_choices(task):
    with pytest.raises(PredictorError, match="pretraining must be one of auto, on, off, got 'yes'"):
        StackedPredictor(task[0], pretraining="yes")


# ---------------------------------------------------------------------- the blend
def test_the_blend_orders_rows_by_the_average_of_its_parts_ranks(task):
    space, pool, x, y, costs = task
    b = BlendSurrogate(space).pretrain(pool, costs).fit(pool[:40], y[:40])
    rows, c = x[600:700], costs[600:700]
    mean, std = b.predict_encoded(rows, c)
    avg = average_ranks(b.forest.predict_encoded(rows, c)[0]) + average_ranks(b.mlp.predict_encoded(rows, c)[0])
    assert np.all(np.diff(mean[np.argsort(avg, kind="stable")]) >= 0)
    assert np.all(std > 0) and 0 <= mean.min() and mean.max() <= 1


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(average_ranks(np.array([0.3, 0.1, 0.3, 0.2])), [2.5, 0, 2.5, 1])


# ---------------------------------------------------------------------- checkpoints
NO_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process")
sys.meta_path.insert(0, NoTorch())
import numpy as np
from jointnas.catalog import load_scorer, load_surrogate
rows = np.load(sys.argv[2])
for load in (load_scorer, load_surrogate):
    mean, std = load(sys.argv[1]).predict_encoded(rows)
    np.save(sys.argv[3], np.stack([mean, std]))
assert "torch" not in sys.modules
"""


@pytest.mark.parametrize("kind", ["fbnetv3", "blend"])
def test_new_checkpoints_load_with_weights_only_and_score_where_torch_cannot_be_imported(kind, task, tmp_path):
    space, pool, x, y, costs = task
    s = catalog.make_surrogate(kind, space, seed=0, ensemble=3, score_bounds=(0.0, 1.0))
    s.pretrain(pool, costs).fit(pool[:30], y[:30]).update(pool[:31], y[:31])
    path = tmp_path / f"{kind}.pt"
    s.save(path)
    assert torch.load(path, weights_only=True)["kind"] == kind
    back = catalog.load_surrogate(path)
    assert type(back) is type(s)
    np.testing.assert_allclose(back.predict(pool[100:150])[0], s.predict(pool[100:150])[0])
    back.update(pool[:32], y[:32])   # a loaded predictor refits warm from its saved weights
    np.save(tmp_path / "rows.npy", x[100:150])
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, str(path), str(tmp_path / "rows.npy"),
                           str(tmp_path / "out.npy")], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), np.stack(s.predict_encoded(x[100:150])), atol=1e-9)


def test_a_warm_started_predictor_refits_warm_on_its_rows_and_the_prior(task):
    from jointnas.surrogates.prior import WithPrior

    space, pool, x, y, costs = task
    p = WithPrior(StackedPredictor(space, pretraining="off"), pool[200:230], y[200:230])
    p.fit(pool[:10], y[:10]).update(pool[:11], y[:11])
    assert p.inner.info["fit"] == {"n": 41, "kind": "warm", "cpu_s": p.inner.info["fit"]["cpu_s"]}


def test_below_auto_from_pretraining_follows_whether_scores_follow_flops(task):
    space, pool, x, y, costs = task
    p = StackedPredictor(space).pretrain(pool, costs)
    by_flops = 0.5 + 0.4 * np.argsort(np.argsort(costs[:16, 0])) / 16
    assert p.fit(pool[:16], by_flops).info["pretraining"]["used"]
    unrelated = 0.5 + 0.4 * np.random.default_rng(11).permutation(16) / 16
    assert abs(kendalltau(unrelated, costs[:16, 0])[0]) < 0.2
    assert not p.fit(pool[:16], unrelated).info["pretraining"]["used"]
