"""The torch half of the MLP predictor: its modules trained (proxy pretraining, ensemble members),
run (the proxy head) and rebuilt from saved weights. :class:`~.ensemble.Predictor` imports this
module on first use, so that scoring a saved predictor (the fine stage) never imports torch."""
from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from .network import Member, ProxyModel


@contextmanager
def seeded(seed: int, *salt: int) -> Iterator[None]:
    """Deterministic torch RNG for one piece of training, leaving the caller's RNG as it was.

    Training runs on one thread: its small batches gain nothing from more, and on a shared
    CPU extra threads spin-waiting for each other made a fit over 20 times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(np.random.SeedSequence([seed & 0xFFFFFFFF, *salt]).generate_state(1)[0]))
            yield
    finally:
        torch.set_num_threads(threads)


def is_tensor(obj) -> bool:
    return isinstance(obj, torch.Tensor)


def new_member(space, config: dict) -> Member:
    return Member(space.arch_width, space.recipe_width, config["hidden"], config["encoder_layers"],
                  config["head_layers"])


def new_proxy_model(space, config: dict) -> ProxyModel:
    return ProxyModel(space.arch_width, config["hidden"], config["encoder_layers"])


def pretrain_proxy(space, config: dict, arch: np.ndarray, targets: np.ndarray, epochs: int, batch_size: int,
                   lr: float, progress: bool) -> Tuple[ProxyModel, float]:
    """Encoder + proxy head fitted to standardised log-costs ``targets`` of ``arch`` rows; (model, final mse)."""
    x = torch.from_numpy(arch)
    t = torch.from_numpy(targets.astype(np.float32))
    with seeded(config["seed"], 1):
        model = new_proxy_model(space, config)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        steps = epochs * math.ceil(len(x) / batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
        loss_sum = float("nan")
        epoch_iter = range(epochs)
        if progress:
            epoch_iter = tqdm(epoch_iter, desc="pretrain encoder on proxies", unit="epoch")
        for _ in epoch_iter:
            order, loss_sum = torch.randperm(len(x)), 0.0
            for s in range(0, len(x), batch_size):
                idx = order[s:s + batch_size]
                loss = F.mse_loss(model(x[idx]), t[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += loss.item() * len(idx)
            loss_sum /= len(x)
    model.requires_grad_(False).eval()
    return model, loss_sum


def proxy_outputs(model: ProxyModel, arch: np.ndarray) -> np.ndarray:
    """The proxy head's standardised (log-FLOPs, log-params) of ``arch`` rows."""
    with torch.inference_mode():
        return model(torch.from_numpy(arch)).numpy().astype(np.float64)


def fit_member(space, config: dict, encoder: Optional[torch.nn.Module], m: int, x: np.ndarray, z: np.ndarray,
               split: Tuple[np.ndarray, np.ndarray], frozen_epochs: int, full_epochs: int):
    """Ensemble member ``m`` fitted to rows ``x`` and standardised scores ``z`` on ``split`` =
    (train rows, validation rows), starting from ``encoder`` (the pretrained one) where given:
    first with the encoder frozen, then end to end; (member, best validation loss or None)."""
    c = config
    train_idx, val_idx = split
    xt, zt = torch.from_numpy(x[train_idx]), torch.from_numpy(z[train_idx])
    xv, zv = torch.from_numpy(x[val_idx]), torch.from_numpy(z[val_idx])
    huber = lambda pred, target: F.huber_loss(pred, target, delta=c["huber_delta"])  # noqa: E731
    with seeded(c["seed"], 3, m):
        member = new_member(space, c)
        if encoder is not None:
            member.encoder.load_state_dict(encoder.state_dict())
        best, best_state = math.inf, None
        for phase, epochs in (("frozen", frozen_epochs), ("full", full_epochs)):
            if epochs == 0:
                continue
            member.encoder.requires_grad_(phase == "full")
            params = member.parameters() if phase == "full" else member.head.parameters()
            opt = torch.optim.AdamW(params, lr=c["lr"], weight_decay=c["weight_decay"])
            stale = 0
            for _ in range(epochs):
                member.train()
                order = torch.randperm(len(xt))
                for s in range(0, len(xt), c["batch_size"]):
                    idx = order[s:s + c["batch_size"]]
                    loss = huber(member(xt[idx]), zt[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                if len(xv):
                    member.eval()
                    with torch.no_grad():
                        val = float(huber(member(xv), zv))
                    if val < best - 1e-6:
                        best, best_state, stale = val, copy.deepcopy(member.state_dict()), 0
                    else:
                        stale += 1
                        if stale >= c["patience"]:
                            break
        if best_state is not None:
            member.load_state_dict(best_state)
    member.requires_grad_(False).eval()
    return member, (best if best_state is not None else None)


def fit_members(space, config: dict, encoder, x: np.ndarray, z: np.ndarray, splits, frozen_epochs: int,
                full_epochs: int, progress: bool):
    """One member per (train rows, validation rows) of ``splits`` (see :func:`fit_member`);
    (members, their validation losses)."""
    members, val_losses = [], []
    splits = tqdm(splits, desc="fit predictor ensemble", unit="member") if progress else splits
    for m, split in enumerate(splits):
        member, val = fit_member(space, config, encoder, m, x, z, split, frozen_epochs, full_epochs)
        members.append(member)
        val_losses.append(val)
    return members, val_losses


def plain_state_dict(module: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def restored(module: torch.nn.Module, state_dict: dict) -> torch.nn.Module:
    """``module`` with saved weights (numpy arrays or tensors), frozen for scoring."""
    module.load_state_dict({k: torch.as_tensor(v) for k, v in state_dict.items()})
    return module.requires_grad_(False).eval()
