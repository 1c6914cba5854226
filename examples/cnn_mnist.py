"""A small CNN on the 5,000 embedded MNIST digits, watched by vgtui: the whole integration is the `with` line and
`probe.step(...)`.

    python examples/cnn_mnist.py                 # 2 epochs, writes cnn_mnist.jsonl
    vgtui follow cnn_mnist.jsonl                 # in another terminal: the run, live

The layers keep the model's own names (features.0, features.3, classifier.1, classifier.3); each Conv/Linear
layer's activation statistics come from the ReLU that follows it.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import vgtui
from vgtui.engine.data import load_mnist5k


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),   # 28 -> 26 -> 13
            nn.Conv2d(8, 16, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 13 -> 11 -> 5
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metrics", default="cnn_mnist.jsonl", help="the metrics file (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    ap.add_argument("--every", type=int, default=20, help="probe every N steps (default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    data = load_mnist5k(args.device)
    x_train, x_test = data.x_train.view(-1, 1, 28, 28), data.x_test.view(-1, 1, 28, 28)
    model = SmallCNN().to(args.device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    steps_per_epoch = len(x_train) // args.batch_size
    total = steps_per_epoch * args.epochs
    total = min(total, args.max_steps) if args.max_steps else total

    step = 0
    with vgtui.watch(model, metrics=args.metrics, every=args.every, optimizer=opt, total_steps=total) as probe:
        for epoch in range(1, args.epochs + 1):
            model.train()
            perm = torch.randperm(len(x_train), device=args.device)
            for b in range(min(steps_per_epoch, total - step)):
                step += 1
                idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
                logits = model(x_train[idx])
                loss = F.cross_entropy(logits, data.y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                probe.step(loss=loss, metrics={"acc": (logits.argmax(1) == data.y_train[idx]).float().mean()})
            model.eval()  # validation in eval(): not probed
            with torch.no_grad():
                acc = (model(x_test).argmax(1) == data.y_test).float().mean().item()
            print(f"epoch {epoch}: {step} steps, loss {loss.item():.3f}, test accuracy {acc:.3f}")
            if step >= total:
                break


if __name__ == "__main__":
    main()
