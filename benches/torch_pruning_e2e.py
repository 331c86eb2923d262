#!/usr/bin/env python3
"""End-to-end comparison baseline: Torch-Pruning (PyPI `torch-pruning`, 1.6) on sacp's VGG-8
or ResNet-20 for Fashion-MNIST (--net), with the same network, weights, data, normalisation, augmentation and
fine-tuning budget as sacp's own end-to-end run, so the test accuracies are comparable.

Protocol (the sacp source each choice mirrors is named in brackets):

* Network: sacp's VGG-8 (models/vgg8_fashion_mnist.toml; src/models/vgg.rs, layers.rs):
  conv3x3(pad 1, bias)+BN(eps 1e-5)+ReLU at widths 32,32,M,64,64,M,128,128,M (max-pool 2/2,
  28->14->7->3), flatten, linear 1152->256, BN1d, ReLU, linear 256->10. Parameter names equal
  the safetensors tensor names (features.conv1 ... classifier.fc); the trained weights are read
  from target/ranking_bench/vgg8.safetensors (parsed by hand: u64 header length, JSON
  header, little-endian f32 data). Base test accuracy is checked on load (sacp: 91.37%).
  --net resnet20: sacp's ResNet-20 (models/resnet20_fashion_mnist.toml; src/models/resnet.rs):
  conv3x3 16 + BN + ReLU, three stages of three basic blocks at 16, 32, 64 channels (stride 2
  at the first block of stages 2 and 3), option-A shortcuts (every other pixel, zero channels
  padded half before, half after), global average pool, linear 64->10; weights from
  target/ranking_bench/resnet20.safetensors (sacp: 88.78% test). Torch-Pruning's graph
  cannot prune the residual stream through the zero-pad (it merges all three stages into one
  group and builds an invalid network), so its ResNet-20 runs prune the blocks' inner
  channels only; sacp prunes the residual groups too.
* Data: Fashion-MNIST IDX files (gzip or raw) in /usr/share/datasets/fashion-mnist. Pixels
  /255, then (x - 0.2860) / 0.3530 [src/data/mod.rs: fashion-mnist mean/std]. Training
  augmentation: random horizontal flip with p = 0.5, no crop [src/data/mod.rs Augment
  { crop_padding: 0, flip: true } for fashion-mnist; src/data/batch.rs]. The 60k training
  images are split with a seeded permutation into 55k train + 5k held-out [DataSet::split:
  5000 held out, seeded; the permutation itself is numpy's, not Rust's StdRng]; test = the
  10k t10k images.
* Pruning: torch_pruning.pruner.MetaPruner, one shot (iterative_steps=1), example input
  1x1x28x28, classifier.fc ignored, criteria l1 = MagnitudeImportance(p=1), bn_scale =
  BNScaleImportance(), taylor = TaylorImportance() (gradients of the cross-entropy summed
  over 10 un-augmented training batches of 64, model in eval mode, as in Torch-Pruning's
  benchmarks/main.py), allocation uniform = global_pruning=False, global = global_pruning=True
  (other arguments at their defaults). `pruning_ratio` is found by bisection so that the
  MACs reduction measured by tp.utils.count_ops_and_params against the unpruned model is
  within +-1 point of the target (the closest ratio found is kept). sacp's MAC count
  (conv + linear weights x output pixels only [src/ir/cost.rs]) is recorded too.
  No BN recalibration after pruning (sacp recalibrates; Torch-Pruning does not).
* Fine-tuning [src/train/mod.rs train(); src/pipeline/mod.rs training_config()]: 1 epoch,
  batch 64, floor(55000/64) = 859 steps (the last partial batch is dropped), SGD momentum 0.9,
  Nesterov, weight decay 5e-4 coupled into the gradient of every parameter (BN and biases
  included) [src/train/sgd.rs], lr 0.01 with cosine decay per step lr*0.5*(1+cos(pi*s/859)),
  s = 0..858, no warm-up, no label smoothing; BN momentum 0.1 in training mode.
  Distillation from the unpruned network in eval mode on the same augmented batch
  [src/train/loss.rs]: (1-a)*CE + a*T^2*KL(softmax(t/T) || softmax(s/T)) summed over classes
  and averaged over the batch, T = 4, a = 0.5.
* Measured: held-out (5k) and test (10k) top-1 right after pruning, and after fine-tuning;
  MACs and params from count_ops_and_params; wall time per run.

Command line (one JSON line per run is appended to --out as soon as it ends; runs already in
the file are skipped, so a killed invocation loses only the run in progress):

    python3 benches/torch_pruning_e2e.py --targets 0.5,0.75 --seeds 0 \
        --criteria l1,bn_scale,taylor --allocations uniform,global --threads 2 \
        --out /tmp/tp_e2e/seed0.jsonl

    python3 benches/torch_pruning_e2e.py --table /tmp/tp_e2e/seed0.jsonl   # table only

Options --net vgg8|resnet20, --weights, --data, --stop-at HH:MM (UTC; no run starts after it) and --epochs.
"""

import argparse
import copy
import datetime
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = 0.2860, 0.3530  # src/data/mod.rs, fashion-mnist
HELDOUT = 5000
BATCH = 64
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4
TEMPERATURE, ALPHA = 4.0, 0.5
TAYLOR_BATCHES = 10
INPUT = (1, 1, 28, 28)  # the example input every network here is traced and counted with


# ---------------------------------------------------------------------------- network


class VGG8(nn.Module):
    """sacp's zoo VGG-8 (src/models/vgg.rs, depth 8) with its tensor names."""

    def __init__(self):
        super().__init__()
        self.features = nn.Module()
        c, conv, pool = 1, 0, 0
        self.order = []
        for v in [32, 32, "M", 64, 64, "M", 128, 128, "M"]:
            if v == "M":
                pool += 1
                setattr(self.features, f"pool{pool}", nn.MaxPool2d(2, 2, 0))
                self.order.append(f"pool{pool}")
            else:
                conv += 1
                setattr(self.features, f"conv{conv}", nn.Conv2d(c, v, 3, 1, 1, bias=True))
                setattr(self.features, f"bn{conv}", nn.BatchNorm2d(v, eps=1e-5, momentum=0.1))
                setattr(self.features, f"relu{conv}", nn.ReLU())
                self.order += [f"conv{conv}", f"bn{conv}", f"relu{conv}"]
                c = v
        self.classifier = nn.Module()
        self.classifier.linear1 = nn.Linear(128 * 3 * 3, 256)
        self.classifier.norm1 = nn.BatchNorm1d(256, eps=1e-5, momentum=0.1)
        self.classifier.relu1 = nn.ReLU()
        self.classifier.fc = nn.Linear(256, 10)

    def forward(self, x):
        for name in self.order:
            x = getattr(self.features, name)(x)
        x = torch.flatten(x, 1)
        c = self.classifier
        return c.fc(c.relu1(c.norm1(c.linear1(x))))

    def widths(self):
        return [getattr(self.features, f"conv{i}").out_channels for i in range(1, 7)] + [
            self.classifier.linear1.out_features
        ]

    def ignored(self):
        return [self.classifier.fc]


class Block(nn.Module):
    """One basic block of sacp's CIFAR ResNet (src/models/resnet.rs cifar()): conv-BN-ReLU,
    conv-BN, plus the "option A" shortcut (every stride-th pixel, zero channels padded
    before and after, exec's ZeroPad), then ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout, eps=1e-5)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout, eps=1e-5)
        self.pad = ((cout - cin) // 2, cout - cin - (cout - cin) // 2) if cin != cout else None
        self.stride = stride

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.pad is None:
            return F.relu(y + x)
        s = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad[0], self.pad[1]))
        return F.relu(y + s)


class ResNet20(nn.Module):
    """sacp's zoo ResNet-20 with `input = [1, 28, 28]` (src/models/resnet.rs, the spec
    benches/ranking.sh trains) with its tensor names: conv1/bn1, layer{1,2,3}.{0,1,2}, fc."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16, eps=1e-5)
        c = 16
        for stage, width in enumerate([16, 32, 64]):
            blocks = []
            for b in range(3):
                blocks.append(Block(c, width, 2 if stage > 0 and b == 0 else 1))
                c = width
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(x.mean((2, 3)), 1))

    def blocks(self):
        return [b for stage in (self.layer1, self.layer2, self.layer3) for b in stage]

    def widths(self):
        return [b.conv1.out_channels for b in self.blocks()] + [b.conv2.out_channels for b in self.blocks()]

    def ignored(self):
        # Torch-Pruning 1.6 treats the channel zero-pad of an option-A shortcut as an
        # element-wise op: it merges the three stages' residual streams into one group and
        # prunes them into an invalid network (the fc then gets 56 features for 32 weights).
        # So its runs prune the blocks' inner channels only (conv1 out / conv2 in), which
        # reach 75% of the MACs; the stem and every conv2 (the residual stream) stay.
        return [self.fc, self.conv1] + [b.conv2 for b in self.blocks()]


# --net: the network class, and its test top-1 under `sacp eval` with the weights
# benches/ranking.sh caches (target/ranking_bench/NET.safetensors), checked on load.
NETS = {"vgg8": (VGG8, 0.9137), "resnet20": (ResNet20, 0.8878)}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype="<f4").reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def load_base(net, path):
    model = NETS[net][0]()
    tensors = read_safetensors(path)
    state = model.state_dict()
    missing = [k for k in state if k not in tensors and not k.endswith("num_batches_tracked")]
    extra = [k for k in tensors if k not in state]
    if missing or extra:
        sys.exit(f"{path}: missing {missing}, unexpected {extra}")
    for k, v in tensors.items():
        if tuple(state[k].shape) != tuple(v.shape):
            sys.exit(f"{path}: {k} has shape {tuple(v.shape)}, the network wants {tuple(state[k].shape)}")
    model.load_state_dict(tensors, strict=False)
    return model.eval()


def sacp_macs(model):
    """MACs as sacp counts them (src/ir/cost.rs): conv and linear weights x output pixels."""
    total = 0
    hooks = []

    def hook(m, _inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += m.weight.numel() * out.shape[2] * out.shape[3]
        else:
            total += m.weight.numel()

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model.eval()(torch.zeros(INPUT))
    for h in hooks:
        h.remove()
    return total


# ---------------------------------------------------------------------------- data


def read_idx(folder, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            raw = gzip.open(path).read() if name.endswith(".gz") else open(path, "rb").read()
            break
    else:
        sys.exit(f"{folder}: no {stem}[.gz]")
    magic, count = struct.unpack(">II", raw[:8])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, raw[4 : 4 + 4 * dims])
    assert shape[0] == count
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_data(folder):
    def images(stem):
        x = torch.from_numpy(read_idx(folder, stem).astype(np.float32) / 255.0)
        return ((x - MEAN) / STD).unsqueeze(1).contiguous()

    def labels(stem):
        return torch.from_numpy(read_idx(folder, stem).astype(np.int64))

    return (
        images("train-images-idx3-ubyte"),
        labels("train-labels-idx1-ubyte"),
        images("t10k-images-idx3-ubyte"),
        labels("t10k-labels-idx1-ubyte"),
    )


def split(n, seed):
    order = np.random.default_rng(seed).permutation(n)
    return torch.from_numpy(np.sort(order[: n - HELDOUT])), torch.from_numpy(np.sort(order[n - HELDOUT :]))


@torch.no_grad()
def accuracy(model, x, y, batch=256):
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += (model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
    return correct / len(x)


# ---------------------------------------------------------------------------- pruning


def importance(criterion):
    import torch_pruning as tp

    if criterion == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if criterion == "bn_scale":
        return tp.importance.BNScaleImportance()
    if criterion == "taylor":
        return tp.importance.TaylorImportance()
    sys.exit(f"unknown criterion {criterion}")


def taylor_gradients(base, x, y, train_idx, seed):
    """Gradients of the cross-entropy summed over TAYLOR_BATCHES seeded batches (eval mode)."""
    model = copy.deepcopy(base).eval()
    model.zero_grad()
    g = torch.Generator().manual_seed(1_000_003 + seed)
    pick = train_idx[torch.randperm(len(train_idx), generator=g)[: TAYLOR_BATCHES * BATCH]]
    for b in range(TAYLOR_BATCHES):
        idx = pick[b * BATCH : (b + 1) * BATCH]
        F.cross_entropy(model(x[idx]), y[idx]).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def prune_once(base, ratio, criterion, allocation, grads):
    import torch_pruning as tp

    model = copy.deepcopy(base).eval()
    if grads is not None:
        for n, p in model.named_parameters():
            p.grad = grads[n].clone()
    pruner = tp.pruner.MetaPruner(
        model,
        torch.zeros(INPUT),
        importance=importance(criterion),
        global_pruning=allocation == "global",
        pruning_ratio=ratio,
        iterative_steps=1,
        ignored_layers=model.ignored(),
    )
    pruner.step()
    model.zero_grad(set_to_none=True)
    macs, params = tp.utils.count_ops_and_params(model, torch.zeros(INPUT))
    return model, macs, params


def prune_to_target(base, base_macs, target, criterion, allocation, grads):
    """Bisection on pruning_ratio; returns the pruned model closest to the MACs target."""
    lo, hi = 0.0, 0.99
    best = None
    for _ in range(30):
        ratio = 0.5 * (lo + hi)
        model, macs, params = prune_once(base, ratio, criterion, allocation, grads)
        reduction = 1.0 - macs / base_macs
        if best is None or abs(reduction - target) < abs(best[3] - target):
            best = (model, macs, params, reduction, ratio)
        if abs(reduction - target) <= 0.002:
            break
        if reduction < target:
            lo = ratio
        else:
            hi = ratio
    return best


# ---------------------------------------------------------------------------- fine-tuning


def objective(logits, labels, teacher):
    """src/train/loss.rs: (1-a)*CE + a*T^2*KL(teacher_T || student_T), batch mean."""
    ce = F.cross_entropy(logits, labels)
    log_t = F.log_softmax(teacher / TEMPERATURE, 1)
    log_s = F.log_softmax(logits / TEMPERATURE, 1)
    kl = (log_t.exp() * (log_t - log_s)).sum() / logits.shape[0]
    return (1 - ALPHA) * ce + ALPHA * TEMPERATURE * TEMPERATURE * kl


def finetune(model, teacher, x, y, train_idx, seed, epochs):
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = len(train_idx) // BATCH
    total = epochs * steps_per_epoch
    g = torch.Generator().manual_seed(seed)
    teacher.eval()
    loss_sum, seen = 0.0, 0
    for epoch in range(epochs):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=g)]
        loss_sum, seen = 0.0, 0
        for step in range(steps_per_epoch):
            idx = order[step * BATCH : (step + 1) * BATCH]
            images = x[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
            with torch.no_grad():
                t = teacher(images)
            logits = model(images)
            loss = objective(logits, y[idx], t)
            if not torch.isfinite(loss):
                raise RuntimeError(f"diverged at epoch {epoch + 1}, step {step + 1}")
            s = epoch * steps_per_epoch + step
            for group in opt.param_groups:
                group["lr"] = LR * 0.5 * (1.0 + math.cos(math.pi * s / total))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
    model.eval()
    return loss_sum / max(seen, 1)


# ---------------------------------------------------------------------------- runs and table


def key(r):
    return (r.get("net", "vgg8"), float(r["target"]), r["criterion"], r["allocation"], int(r["seed"]))


def read_records(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def table(records):
    groups = {}
    for r in records:
        groups.setdefault((r.get("net", "vgg8"), r["target"], r["criterion"], r["allocation"]), []).append(r)

    def stat(vals, pct=True):
        s = 100.0 if pct else 1.0
        m = s * float(np.mean(vals))
        if len(vals) > 1:
            return f"{m:6.2f} ± {s * float(np.std(vals, ddof=1)):4.2f}"
        return f"{m:6.2f}"

    head = f"{'net':>8} {'target':>6} {'criterion':>9} {'alloc':>7} {'n':>2} {'MACs -%':>15} {'params -%':>15} {'held-out after prune':>20} {'test after prune':>16} {'test after FT':>15} {'s/run':>6}"
    lines = [head, "-" * len(head)]
    for (n, t, c, a), rs in sorted(groups.items(), key=lambda kv: (kv[0][:3], kv[0][3] != "uniform")):
        lines.append(
            f"{n:>8} {t:>6.2f} {c:>9} {a:>7} {len(rs):>2} "
            f"{stat([r['macs_reduction'] for r in rs]):>15} {stat([r['params_reduction'] for r in rs]):>15} "
            f"{stat([r['heldout_acc_pruned'] for r in rs]):>20} {stat([r['test_acc_pruned'] for r in rs]):>16} "
            f"{stat([r['test_acc_finetuned'] for r in rs]):>15} {np.mean([r['wall_seconds'] for r in rs]):>6.0f}"
        )
    return "\n".join(lines)


def deadline(stop_at):
    """The next HH:MM UTC from now (tomorrow's when today's has gone), or None."""
    if not stop_at:
        return None
    now = datetime.datetime.now(datetime.timezone.utc)
    h, m = (int(v) for v in stop_at.split(":"))
    at = now.replace(hour=h, minute=m, second=0, microsecond=0)
    return at if at > now else at + datetime.timedelta(days=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--targets", default="0.5,0.75")
    p.add_argument("--seeds", default="0")
    p.add_argument("--criteria", default="l1,bn_scale,taylor")
    p.add_argument("--allocations", default="uniform,global")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--out", default="/tmp/tp_e2e/results.jsonl")
    p.add_argument("--net", choices=sorted(NETS), default="vgg8", help="the network (sacp's zoo twin)")
    p.add_argument("--weights", default=None, help="default: target/ranking_bench/NET.safetensors")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--stop-at", default=None, help="HH:MM UTC after which no new run starts")
    p.add_argument("--table", metavar="JSONL", help="print the table of a results file and exit")
    args = p.parse_args()

    if args.table:
        print(table(read_records(args.table)))
        return

    import torch_pruning as tp

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    x, y, x_test, y_test = load_data(args.data)
    weights = args.weights or os.path.join(ROOT, f"target/ranking_bench/{args.net}.safetensors")
    base = load_base(args.net, weights)
    expected = NETS[args.net][1]
    base_test = accuracy(base, x_test, y_test)
    base_macs, base_params = tp.utils.count_ops_and_params(base, torch.zeros(INPUT))
    base_sacp_macs = sacp_macs(base)
    print(
        f"base {args.net}: test top-1 {100 * base_test:.2f}% (sacp: {expected}), MACs {base_macs:.0f} (sacp count {base_sacp_macs}), "
        f"params {base_params:.0f}; torch {torch.__version__}, torch_pruning {tp.__version__}, {args.threads} threads",
        flush=True,
    )
    if expected is not None and abs(base_test - expected) > 0.01:
        sys.exit("the base accuracy is far from sacp's: the network or the normalisation is wrong")

    stop = deadline(args.stop_at)
    done = {key(r) for r in read_records(args.out)}
    targets = [float(t) for t in args.targets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    criteria = args.criteria.split(",")
    allocations = args.allocations.split(",")
    for seed in seeds:
        train_idx, held_idx = split(len(x), seed)
        x_held, y_held = x[held_idx], y[held_idx]
        base_held = accuracy(base, x_held, y_held)
        grads = None
        # criterion-major, so that a run cut short by --stop-at has both targets of the
        # configurations it reached
        for criterion in criteria:
            for allocation in allocations:
                for target in targets:
                    k = (args.net, target, criterion, allocation, seed)
                    if k in done:
                        print(f"skip {k}: already in {args.out}", flush=True)
                        continue
                    if stop is not None and datetime.datetime.now(datetime.timezone.utc) >= stop:
                        print(f"stop: it is past {args.stop_at} UTC", flush=True)
                        print(table(read_records(args.out)))
                        return
                    start = time.time()
                    torch.manual_seed(seed)
                    if criterion == "taylor" and grads is None:
                        grads = taylor_gradients(base, x, y, train_idx, seed)
                    model, macs, params, reduction, ratio = prune_to_target(
                        base, base_macs, target, criterion, allocation, grads if criterion == "taylor" else None
                    )
                    prune_seconds = time.time() - start
                    held_pruned = accuracy(model, x_held, y_held)
                    test_pruned = accuracy(model, x_test, y_test)
                    t0 = time.time()
                    torch.manual_seed(seed)
                    train_loss = finetune(model, base, x, y, train_idx, seed, args.epochs)
                    ft_seconds = time.time() - t0
                    record = {
                        "net": args.net,
                        "target": target,
                        "criterion": criterion,
                        "allocation": allocation,
                        "seed": seed,
                        "pruning_ratio": ratio,
                        "widths": model.widths(),
                        "macs_base": base_macs,
                        "macs": macs,
                        "macs_reduction": reduction,
                        "params_base": base_params,
                        "params": params,
                        "params_reduction": 1.0 - params / base_params,
                        "sacp_macs_reduction": 1.0 - sacp_macs(model) / base_sacp_macs,
                        "base_test_acc": base_test,
                        "base_heldout_acc": base_held,
                        "heldout_acc_pruned": held_pruned,
                        "test_acc_pruned": test_pruned,
                        "train_loss": train_loss,
                        "heldout_acc_finetuned": accuracy(model, x_held, y_held),
                        "test_acc_finetuned": accuracy(model, x_test, y_test),
                        "epochs": args.epochs,
                        "prune_seconds": prune_seconds,
                        "finetune_seconds": ft_seconds,
                        "wall_seconds": time.time() - start,
                        "threads": args.threads,
                        "torch": torch.__version__,
                        "torch_pruning": tp.__version__,
                        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    }
                    with open(args.out, "a") as f:
                        f.write(json.dumps(record) + "\n")
                    print(
                        f"target {target:.2f} {criterion:>8} {allocation:>7} seed {seed}: ratio {ratio:.4f}, "
                        f"MACs -{100 * reduction:.2f}% (sacp count -{100 * record['sacp_macs_reduction']:.2f}%), "
                        f"params -{100 * record['params_reduction']:.2f}%, widths {record['widths']}, "
                        f"held-out after prune {100 * held_pruned:.2f}%, test after FT {100 * record['test_acc_finetuned']:.2f}% "
                        f"(prune {prune_seconds:.0f}s, fine-tune {ft_seconds:.0f}s)",
                        flush=True,
                    )
    print(table(read_records(args.out)))


if __name__ == "__main__":
    main()
