"""vgtui.watch under the older `pytorch_lightning` package: the callback of vgtui.integrations.lightning, as a
pytorch_lightning Callback (its Trainer accepts only its own).

    from vgtui.integrations.pytorch_lightning import VgtuiCallback   # pip install 'pytorch-lightning>=2.0'
    trainer = pl.Trainer(callbacks=[VgtuiCallback(metrics="run.jsonl", every=50)])
"""

from __future__ import annotations

try:
    from pytorch_lightning import Callback
except ImportError:
    from vgtui.integrations import missing

    raise missing("pytorch_lightning", "pytorch_lightning", "'pytorch-lightning>=2.0'") from None

from vgtui.integrations._lightning import WatchHooks


class VgtuiCallback(WatchHooks, Callback):
    __doc__ = WatchHooks.__doc__
