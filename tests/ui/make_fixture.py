"""Re-create the recorded runs the snapshot tests replay (real training, seeded): python tests/ui/make_fixture.py"""

from __future__ import annotations

import json
from pathlib import Path

from vgtui.core.config import RunConfig
from vgtui.core.records import to_json
from vgtui.engine.trainer import Trainer

HERE = Path(__file__).parent / "fixtures"

RUNS = {
    "sigmoid": RunConfig(dataset="mnist-5k", max_steps=120, probe_every=10, epochs=3, seed=0),
    "relu-diverged": RunConfig(dataset="mnist-5k", activation="relu", init="kaiming", lr=1.0, probe_every=1,
                               seed=0),
}


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, cfg in RUNS.items():
        recs = []
        Trainer(cfg, [recs.append]).run()
        with open(HERE / f"{name}.jsonl", "w") as f:
            for r in recs:
                d = to_json(r)
                if d["type"] == "run":
                    d["config"]["data_dir"] = "~/.cache/vgtui"
                    d["version"] = "0.0.0"
                f.write(json.dumps(d, separators=(",", ":")) + "\n")
        print(name, len(recs), "records")


if __name__ == "__main__":
    main()
