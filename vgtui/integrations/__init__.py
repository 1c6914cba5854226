"""vgtui.watch inside the trainers practitioners use, each an optional extra imported only when asked for:

    from vgtui.integrations.hf import VgtuiCallback          # pip install 'vgtui[hf]' (transformers, accelerate)
    trainer.add_callback(VgtuiCallback(metrics="run.jsonl", every=50))

    from vgtui.integrations.lightning import VgtuiCallback   # pip install 'vgtui[lightning]'
    L.Trainer(callbacks=[VgtuiCallback(metrics="run.jsonl", every=50)])

(`vgtui.integrations.pytorch_lightning` is the same callback for the older `pytorch_lightning` package.) Nothing
here is imported by `import vgtui`; without the extra, importing the module raises an ImportError whose one line
names the pip command that adds it.
"""


def missing(module: str, package: str, install: str) -> ImportError:
    """The one-line ImportError of an integration whose package is not installed: `install` is what to pip
    install ("'vgtui[hf]'")."""
    return ImportError(f"vgtui.integrations.{module} needs {package}, which is not installed: pip install {install}")
