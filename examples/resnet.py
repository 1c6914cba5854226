"""torchvision's ResNet-18 (untrained, 21 Conv/Linear layers) for a few steps on random images, watched by vgtui.

    python examples/resnet.py --steps 40         # writes resnet.jsonl
    vgtui follow resnet.jsonl                    # in another terminal

Layer names are ResNet's own: conv1, layer1.0.conv1, ..., layer4.1.conv2, layer2.0.downsample.0, fc. With
--amp on a GPU it trains under autocast with a GradScaler, whose skipped steps show as events in the file.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torchvision.models import resnet18

import vgtui


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metrics", default="resnet.jsonl", help="the metrics file (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--every", type=int, default=5, help="probe every N steps (default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--size", type=int, default=64, help="image side in pixels (default: %(default)s)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", action="store_true", help="autocast (float16 on a GPU, bfloat16 on the CPU) + GradScaler")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = resnet18(weights=None, num_classes=10).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(dev.type, enabled=args.amp)
    amp_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    x = torch.randn(args.batch_size, 3, args.size, args.size, device=dev)
    y = torch.randint(0, 10, (args.batch_size,), device=dev)

    with vgtui.watch(model, metrics=args.metrics, every=args.every, optimizer=opt, total_steps=args.steps) as probe:
        for _ in range(args.steps):
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=args.amp):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            probe.step(loss=loss)
    print(f"{probe.steps} steps, {probe.snapshots} snapshots, final loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
