"""End to end with the real child-process trainer (`ProcessBackend`, what `vgtui` runs): start it, see it train on
screen, swap the activation with a key, quit; the metrics file holds the run, the event and the end."""

from __future__ import annotations

import json

from .conftest import SMALL, process_app, status_shows, wait_for


async def test_child_process_trainer_key_and_quit(tmp_path):
    metrics = tmp_path / "run.jsonl"
    app, source = process_app(SMALL, str(metrics))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.main.state.snap is not None, timeout=60, what="the child's first snapshot")
        status = await status_shows(pilot, "▶ running")
        assert "mnist-5k · cpu · sigmoid" in status and "3×64" in status
        await pilot.press("a")
        await status_shows(pilot, "activation → tanh")
        await wait_for(pilot, lambda: app.main.state.snap.activation == "tanh", what="a tanh snapshot from the child")
        await pilot.press("q")
        await pilot.pause(0.1)
    assert app.return_code == 0
    assert not source.alive
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert records[0]["type"] == "run" and records[0]["config"]["activation"] == "sigmoid"
    assert [r["set"] for r in records if r["type"] == "event"] == [{"activation": "tanh"}]
    assert any(r["type"] == "snapshot" and r["activation"] == "tanh" for r in records)
    assert records[-1]["type"] == "end" and records[-1]["status"] == "interrupted"
