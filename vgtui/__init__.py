"""vgtui: watch gradients vanish, live, in your terminal.

`vgtui.watch(model, metrics="run.jsonl")` probes your own model in your own training loop (vgtui.watching); it is
imported on first use, so `import vgtui` stays cheap and imports no torch.
"""

__version__ = "0.1.0"

_LAZY = {"watch": "vgtui.watching", "Watch": "vgtui.watching", "WatchWarning": "vgtui.watching"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vgtui' has no attribute {name!r}")
