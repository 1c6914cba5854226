"""The loss spikes on screen (issue 18): a ▲ on the loss curve at each spike's step, and the spikes view (tab, once a
run has one): the window's per-layer series, the leading layer highlighted, the lead time, the recorder's words.
Replay, follow and a live source; the real app at 80x24 and 120x40. tests/ui/fixtures/spiky.jsonl is a real run of
the engine with its flight recorder, fc2's weights scaled by 8 as step 199 ends (tests/ui/make_fixture.py spiky_run):
the recorder's own spike record names fc2's weight norm first."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from vgtui.core.records import Lead, RecordEncoder, SpikeRecord, record_from_json
from vgtui.core.spikes import METRIC_WORDS, spike_words
from vgtui.sources.file import FileSource
from vgtui.ui.app import VgtuiApp
from vgtui.ui.state import RunState

from .conftest import status_shows, text_of, wait_for
from .replay import FIXTURES, ReplayBackend, load

SPIKY = FIXTURES / "spiky.jsonl"
SIZES = [(80, 24), (120, 40)]


def spike_of(path: Path) -> dict:
    return next(d for d in map(json.loads, path.read_text().splitlines()) if d["type"] == "spike")


def replay(path, follow: bool = False) -> VgtuiApp:
    src = FileSource(str(path), follow=follow)
    src.open()
    return VgtuiApp([src], fps=8)


def tabs(app) -> str:
    return text_of(app.main.query_one("#tabs"))


async def to_spikes(pilot) -> None:
    await wait_for(pilot, lambda: "loss spikes" in tabs(pilot.app), what="the spikes tab")
    while pilot.app.main.view != "spikes":
        await pilot.press("tab")
    await wait_for(pilot, lambda: "loss spike " in text_of(pilot.app.main.query_one("#spike-view")), what="the spike view")


def made(step: int, leader: str = "fc2", lead: int = 3) -> SpikeRecord:
    """A spike record made by hand over a 12-step window of the seed's network's six layers."""
    steps = tuple(range(step - 8, step + 4))
    names = [f"fc{i}" for i in range(1, 7)]
    series = {"grad_norm": {n: tuple(1e-3 * (i + 1) * (10.0 if n == leader and s >= step - lead else 1.0)
                                     for s in steps) for i, n in enumerate(names)}}
    return SpikeRecord(step=step, kind="spike", score=12.5, steps=steps,
                       loss=tuple(2.3 if s < step else 5.0 for s in steps), series=series,
                       leaders=(Lead(leader, "grad_norm", step - lead, lead, 30.0),
                                Lead("fc5", "grad_norm", step - lead + 1, lead - 1, 8.0)),
                       elapsed_s=step * 0.02)


def write(path, records) -> None:
    enc = RecordEncoder()
    with open(path, "w") as f:
        for r in records:
            f.write(enc.line(r))


def with_spikes(records, spikes):
    """The records with spikes before the end record."""
    return [*records[:-1], *spikes, records[-1]]


def test_the_state_folds_spikes_and_the_cursor_hides_later_ones():
    recs = load("sigmoid")
    st = RunState()
    for r in recs:
        st.apply(r)
    v = st.snap_version
    st.apply(made(60))
    st.apply(made(30))
    assert [s.step for s in st.visible_spikes()] == [30, 60] and st.snap_version == v + 2
    st.upto = 50
    assert [s.step for s in st.visible_spikes()] == [30]
    st.begin(recs[0])
    assert st.spikes == [] and st.visible_spikes() == []


@pytest.mark.parametrize("size", SIZES)
async def test_a_recorded_spike_on_the_curve_and_in_its_view(size):
    d = spike_of(SPIKY)
    rec = record_from_json(d)
    lead = rec.leader
    assert lead.layer == "fc2" and lead.metric == "weight_norm" and lead.lead > 0  # the injected layer led
    words = METRIC_WORDS[lead.metric]
    ahead = f"{lead.lead} step{'s' * (lead.lead != 1)} before"
    app = replay(SPIKY)
    async with app.run_test(size=size) as pilot:
        await status_shows(pilot, "■ completed")
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: "▲" in text_of(app.main.query_one("#loss")), what="the ▲ on the loss curve")
        assert "loss spikes (1)" in tabs(app)
        await to_spikes(pilot)
        view = app.main.query_one("#spike-view")
        shown = text_of(view)
        assert f"loss spike 1 of 1 · step {rec.step:,}" in shown
        flat = " ".join(shown.replace("│", " ").split())
        assert " ".join(spike_words(rec).split())[:60] in flat  # the recorder's words (wrapped at 80 columns)
        assert f"fc2 led: {ahead} the loss" in flat
        assert f"{words} per layer, log y" in flat
        if size[1] >= 40:  # the leaders ranked, where there is room
            assert f"1 {lead.layer} {words} step {lead.step:,} {ahead}" in flat
        assert not view.failures
        await pilot.press("tab")
        assert app.main.view == "overview"  # the cycle goes on
        # the cursor before the spike: not shown yet
        await pilot.press("home")
        await status_shows(pilot, "snapshot 1 /")
        while app.main.view != "spikes":
            await pilot.press("tab")
        await wait_for(pilot, lambda: f"the run's first is at step {rec.step:,}" in " ".join(text_of(view).split()),
                       what="no spike before the cursor")


async def test_two_spikes_up_and_down_and_hostile_names_as_text(tmp_path):
    hostile = "[bold]fc2\x1b]0;PWNED\x07"
    recs = load("sigmoid")
    a = made(40)
    b = dataclasses.replace(made(90, leader="fc4"), score=2.5127892678581878e32,  # an explosion's finite score
                            leaders=(Lead(hostile, "grad_norm", 88, 2, 1e300),))
    path = tmp_path / "two.jsonl"
    write(path, with_spikes(recs, [a, b]))
    app = replay(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await status_shows(pilot, "■ completed")
        await to_spikes(pilot)
        view = app.main.query_one("#spike-view")
        await wait_for(pilot, lambda: "loss spike 2 of 2 · step 90" in text_of(view), what="the latest spike")
        shown = text_of(view)
        # the reader made it safe (control characters as \xNN); the view draws it as text (no markup)
        assert "[bold]fc2\\x1b]0;PWNED\\x07 led: 2 steps before the loss" in shown and "\x1b" not in shown
        # huge scores in three digits (they were forty, and three hundred in the leaders' table)
        assert "▲ the spike (score 2.51e+32)" in shown and " 1e+300" in shown and "000,000" not in shown
        await pilot.press("up")
        await wait_for(pilot, lambda: "loss spike 1 of 2 · step 40" in text_of(view), what="the first spike")
        assert "fc2 led: 3 steps before the loss" in text_of(view)
        assert "fc5" in text_of(view)  # the second leader, in the table
        await pilot.press("up")  # at the first: stays
        assert "loss spike 1 of 2" in text_of(view)
        await pilot.press("down")
        await wait_for(pilot, lambda: "loss spike 2 of 2" in text_of(view), what="the second again")
        assert app.main.state.position is not None  # up/down did not move the replay's cursor
        assert not view.failures


def growing(tmp_path) -> tuple[Path, VgtuiApp]:
    """The sigmoid fixture's records but its end, in a file followed by the app: a run still being written."""
    path = tmp_path / "growing.jsonl"
    write(path, load("sigmoid")[:-1])
    return path, replay(path, follow=True)


async def test_follow_sees_a_spike_appended(tmp_path):
    path, app = growing(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await status_shows(pilot, "snapshot 12 / 12")
        assert "loss spikes" not in tabs(app)
        enc = RecordEncoder()
        enc.line(load("sigmoid")[0])  # the header: the encoder knows the run it writes for
        with open(path, "a") as f:
            f.write(enc.line(made(100)))
        await wait_for(pilot, lambda: "loss spikes (1)" in tabs(app), what="the followed spike")
        await status_shows(pilot, "step 100: loss spike (score 12); fc2's gradient norm rose 3 steps before the loss")
        await wait_for(pilot, lambda: "▲" in text_of(app.main.query_one("#loss")), what="its ▲")
        assert "▲ loss spike" in str(app.main.query_one("#loss").border_subtitle)
        await pilot.press("z", "w")  # followed: the zoom ends at the newest step, on the time axis too
        await wait_for(pilot, lambda: str(app.main.query_one("#loss").border_title).startswith("loss · time "),
                       what="the zoomed time axis")
        await wait_for(pilot, lambda: "▲" in text_of(app.main.query_one("#loss")), what="the ▲ on the time axis")


async def test_a_live_source_shows_its_spikes():
    """The engine's records as it sent them (spiky.jsonl), through a live source: the spike as it comes."""
    recs = load("spiky")
    rec = next(r for r in recs if isinstance(r, SpikeRecord))
    backend = ReplayBackend(recs)
    app = VgtuiApp(backend, fps=8, start_source=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await to_spikes(pilot)
        view = app.main.query_one("#spike-view")
        await wait_for(pilot, lambda: f"loss spike 1 of 1 · step {rec.step:,}" in text_of(view), what="the spike")
        assert "fc2 led: 2 steps before the loss" in " ".join(text_of(view).split())


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_spike_view(snap_compare, size, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(size[0]))  # plotext sizes its figures to the terminal it sees (pytest's: 80)
    monkeypatch.setenv("LINES", str(size[1]))
    async def spike_view(pilot):
        await status_shows(pilot, "■ completed")
        await pilot.app.workers.wait_for_complete()
        await to_spikes(pilot)
        pilot.app.clear_notifications()
        await wait_for(pilot, pilot.app.main.up_to_date, what="every panel's last frame")
        await pilot.pause(0.1)

    assert snap_compare(replay(SPIKY), terminal_size=size, run_before=spike_view)


def test_replay_without_a_terminal_lists_the_spikes(tmp_path, capsys):
    """`vgtui replay FILE` with no terminal prints the file's spikes and the layer that led each, as `--headless` and
    vgtui.watch's end do; a layer name from the file is shown as text (its escape made visible)."""
    from vgtui.cli import main as vgtui_main

    assert vgtui_main(["replay", str(SPIKY)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"{SPIKY}: run 1: spikes: 1 loss spike: fc2 led 1" in out
    (line,) = [x for x in out if x.startswith(f"{SPIKY}: run 1:   step 201: loss spike (score 22)")]
    assert "fc2's weight norm rose 2 steps before the loss" in line
    # a hostile file: the leading layer's name holds an OSC escape (it sets a terminal's title)
    lines = SPIKY.read_text().splitlines()
    at = next(i for i, x in enumerate(lines) if json.loads(x)["type"] == "spike")
    d = json.loads(lines[at])
    d["leaders"][0]["layer"] = "fc2\x1b]0;PWNED\x07"
    lines[at] = json.dumps(d)
    hostile = tmp_path / "hostile.jsonl"
    hostile.write_text("\n".join(lines) + "\n")
    assert vgtui_main(["replay", str(hostile)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "spikes: 1 loss spike: fc2\\x1b]0;PWNED\\x07 led 1" in out


async def test_an_explosion_leaves_the_end_to_say_the_run_diverged(tmp_path):
    """An explosion record comes just before the end record of a run that diverged: both in one write of a followed
    file, the status says how the run ended (the end's notice), not the explosion's words over it."""
    import dataclasses

    from vgtui.core.records import EndRecord

    path, app = growing(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await status_shows(pilot, "snapshot 12 / 12")
        enc = RecordEncoder()
        boom = dataclasses.replace(made(100), kind="explosion")
        end = EndRecord(status="diverged", steps=101, elapsed_s=9.0, message="non-finite values at step 101, first "
                        "in fc2 (weights); try a lower --lr", layer="fc2")
        with open(path, "a") as f:
            f.write(enc.line(boom) + enc.line(end))
        await wait_for(pilot, lambda: "loss spikes (1)" in tabs(app), what="the explosion in the tabs")
        await wait_for(pilot, lambda: app.main.state.end is not None, what="the end")
        for _ in range(5):  # frames after both: the notice they leave
            await pilot.pause(0.15)
        notice = app.main.notice
        assert "explosion" not in notice and "(tab: loss spikes)" not in notice, notice
        shown = await status_shows(pilot, "diverged")
        assert "explosion" not in shown, shown
