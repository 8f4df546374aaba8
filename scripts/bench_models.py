"""Training throughput and peak memory of timm backbones on log-mel input, one model per process.

    python scripts/bench_models.py resnet18 tf_efficientnet_lite0 --threads 2
    python scripts/bench_models.py vgg16 resnet50 efficientnet_b0 inception_v3 --device cuda --out bench.json

Per model: forward + backward + AdamW step on random (batch, in_chans, n_mels, frames) input
(default 16 x 1 x 128 x 130: 128 mels x 3 s at hop 512 / 22.05 kHz), ``--warmup`` untimed steps,
then ``--steps`` timed ones. Each model runs in a fresh subprocess so its peak RSS
(``ru_maxrss``) is its own. Prints a table; ``--out`` writes the rows as JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench_models")


def measure(name: str, args: argparse.Namespace) -> dict:
    """Time ``args.steps`` training steps of model ``name`` in this process."""
    import torch

    from src.pretrained import create_backbone

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    from src.models import REGISTRY, create_model

    if name in REGISTRY and REGISTRY[name].input == "spec" and not name.startswith(("vgg", "resnet", "efficientnet", "tf_", "inception")):
        model = create_model(name, num_classes=args.num_classes, in_chans=args.in_chans, input_shape=(args.n_mels, args.frames))
        model = model.to(device).train()
    else:
        model = create_backbone(name, num_classes=args.num_classes, in_chans=args.in_chans, pretrained=False).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch, args.in_chans, args.n_mels, args.frames, device=device)
    y = torch.randint(0, args.num_classes, (args.batch,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    row = {
        "model": name, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "input": [args.batch, args.in_chans, args.n_mels, args.frames], "threads": args.threads, "device": args.device,
        "steps": args.steps, "sec_per_step": round(seconds / args.steps, 4),
        "samples_per_s": round(args.batch * args.steps / seconds, 2),
        # CPU-seconds per step: on a shared, overloaded machine wall time is inflated, this much less so
        "cpu_sec_per_step": round(cpu_seconds / args.steps, 4),
        "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # Linux: KiB
    }
    if device.type == "cuda":
        row["peak_cuda_MB"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return row


def run_isolated(name: str, argv: list[str]) -> dict:
    """Run ``measure`` for one model in a child process (clean peak RSS), return its JSON row."""
    cmd = [sys.executable, str(Path(__file__).resolve()), name, "--_child", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"model": name, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="timm model names")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--in-chans", type=int, default=1)
    ap.add_argument("--n-mels", type=int, default=128)
    ap.add_argument("--frames", type=int, default=130)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args._child:
        print(json.dumps(measure(args.models[0], args)))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    passthrough = [a for a in argv if a not in args.models]
    rows = []
    for name in args.models:
        row = run_isolated(name, passthrough)
        log.info("%-24s %s", name, row.get("error") or
                 f"{row['params_M']:7.2f} M params  {row['samples_per_s']:8.2f} samples/s  "
                 f"{row['sec_per_step']:7.3f} s/step ({row['cpu_sec_per_step']:.3f} CPU-s)  peak RSS {row['peak_rss_MB']:8.1f} MB")
        rows.append(row)
    if args.out:
        from src.artifacts import write_json

        write_json(args.out, rows)


if __name__ == "__main__":
    main()
