"""vgtui.watch under Lightning (`lightning.pytorch`): one callback.

    from vgtui.integrations.lightning import VgtuiCallback   # pip install 'vgtui[lightning]'
    trainer = L.Trainer(max_epochs=3, callbacks=[VgtuiCallback(metrics="run.jsonl", every=50)])
    trainer.fit(model, train_loader, val_loader)              # vgtui follow run.jsonl, in another terminal

For the older `pytorch_lightning` package: `from vgtui.integrations.pytorch_lightning import VgtuiCallback`.
What a step is and what each snapshot holds: vgtui.integrations._lightning.WatchHooks.
"""

from __future__ import annotations

try:
    from lightning.pytorch import Callback
except ImportError:
    from vgtui.integrations import missing

    raise missing("lightning", "lightning", "'vgtui[lightning]'") from None

from vgtui.integrations._lightning import WatchHooks


class VgtuiCallback(WatchHooks, Callback):
    __doc__ = WatchHooks.__doc__
