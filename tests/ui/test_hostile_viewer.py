"""The viewer on hostile metrics files (tests/hostile_corpus.py): every file that opens replays (the cursor keys
through every snapshot, each view drawn, p) and is followed while it grows without an exception, a damaged
snapshot shows as damaged with its neighbours still shown, strings from the file are never read as markup, 10,000
metrics per snapshot leave q answered, and on a real terminal no control sequence from a file reaches it."""

from __future__ import annotations

import re
import time

import pytest
from hostile_corpus import ESCAPES, REFUSED, hostile_files

from vgtui.core.metrics import MetricsFileError
from vgtui.sources.file import FileSource
from vgtui.ui.app import VgtuiApp
from vgtui.ui.widgets import ActivationPanel, LayerTable, Panel, StatusBar, position

from .conftest import status_shows, text_of, wait_for
from .ptyrun import ANSI, Tty

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return hostile_files(tmp_path_factory.mktemp("hostile"), long_line_bytes=1 << 16)


def opened(path: str, follow: bool = False) -> FileSource | None:
    """The file's source, or None when the reader refuses the whole file (one line, MetricsFileError)."""
    src = FileSource(path, follow=follow)
    try:
        src.open()
    except MetricsFileError as e:
        assert "\n" not in str(e)
        return None
    return src


def no_failures(app) -> None:
    for panel in app.main.query(Panel):
        assert panel.failures == [], (panel.id, panel.failures)


async def drawn(pilot) -> None:
    """Every visible panel drawn with the data it has now (a frame forced: no waiting for the figures' timer)."""
    pilot.app.main._frame(force=True)
    await wait_for(pilot, pilot.app.main.up_to_date, what="every panel drawn")


def corpus_names() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return sorted(n for n in hostile_files(d, long_line_bytes=1024) if n not in REFUSED)


ODD = ("nan_values", "layers_empty", "many_metrics", "long_line", "restarts", "esc_layer_names", "esc_metrics",
       "schema1_then_schema3_lines", "end_then_more")


@pytest.mark.parametrize("name", corpus_names())
async def test_replay_survives(corpus, name):
    src = opened(corpus[name])
    if src is None:
        pytest.skip("the reader refuses this file whole (one line)")
    app = VgtuiApp([src], fps=20)
    async with app.run_test(size=(120, 40)) as pilot:
        m = app.main
        await drawn(pilot)
        # a file whose damage the index already left out reads as a good file: a few keys; the others (a snapshot
        # that cannot be parsed, several runs, a fork, odd values) from the first snapshot to past the middle one
        walk = name in ODD or any(r.branches or not all(_reads(r, i) for i in range(r.n_snapshots)) for r in src.runs)
        for r in range(len(src.runs)):  # every run of the file (p)
            run = src.run
            n = run.n_snapshots

            def check(i: int) -> None:
                assert m.state.position == (i, n)
                if m.state.snap is None:  # a damaged snapshot shows as damaged; the cursor goes on past it
                    assert m.state.damaged and "damaged" in m.notice
                    assert position(m.state).endswith(f"snapshot {i + 1:,} / {n:,} · damaged")
                else:
                    assert m.state.snap.step == int(run.snapshot_steps[i])

            await pilot.press("home")
            for i in range(min(n // 2 + 1 if walk else 1, n)):  # the corpus damages the middle snapshot
                check(i)
                if i == n // 2 and r == 0:  # every view drawn there
                    for _ in range(3):
                        await drawn(pilot)
                        await pilot.press("tab")
                await pilot.press("right")
            await pilot.press("end")
            if n:
                check(n - 1)
            await pilot.press(*(("left", "space", "p") if walk else ("p",)))
        await drawn(pilot)
        no_failures(app)


async def test_a_damaged_snapshot_shows_as_damaged_between_its_neighbours(corpus):
    for name in ("layers_null", "hist_not_dict", "metric_string", "float_string"):
        src = opened(corpus[name])
        run = src.run
        bad = [i for i in range(run.n_snapshots) if not _reads(run, i)]
        assert bad, f"{name}: a damaged snapshot"
        i = bad[0]
        app = VgtuiApp([src], fps=20)
        async with app.run_test(size=(120, 40)) as pilot:
            m = app.main
            await pilot.press("home", *["right"] * i)
            status = await status_shows(pilot, f"snapshot {i + 1} / {run.n_snapshots} · damaged")
            assert f"line {run._linenos[i]}" in status and m.state.snap is None  # the notice names the line
            await drawn(pilot)
            acts = text_of(m.query_one(ActivationPanel))
            assert "this snapshot's line is damaged" in acts
            await pilot.press("left")  # the neighbours show
            await status_shows(pilot, f"snapshot {i} / {run.n_snapshots} · step {int(run.snapshot_steps[i - 1])}")
            await pilot.press("right", "right")
            await status_shows(pilot, f"snapshot {i + 2} / {run.n_snapshots} · step {int(run.snapshot_steps[i + 1])}")
            # the curves leave the damaged snapshot out and keep the others
            await wait_for(pilot, lambda: len(m.state.history.steps) == run.n_snapshots - 1, what="the history")
            assert int(run.snapshot_steps[i]) not in m.state.history.steps
            # playing passes over it
            await pilot.press("home", "right_square_bracket", "right_square_bracket", "right_square_bracket",
                              "right_square_bracket", "space")
            await wait_for(pilot, lambda: m.state.position[0] == run.n_snapshots - 1, timeout=20, what="the end")
            no_failures(app)


def _reads(run, i) -> bool:
    try:
        run.snapshot(i)
    except MetricsFileError:
        return False
    return True


# the follower on the files whose lines reach the screen damaged or odd (the others read as a shorter good file)
FOLLOWED = ("not_json", "invalid_utf8", "layers_null", "hist_edges_short", "metric_string", "step_huge",
            "prefix_elapsed_word", "deep_nesting", "schema1_then_schema3_lines", "unknown_branch", "esc_branch_config",
            "nan_values", "many_metrics", "restarts", "torn_last_line", "second_header_damaged", "header_only")


@pytest.mark.parametrize("name", FOLLOWED)
async def test_follow_survives_the_file_growing(corpus, tmp_path, name):
    """The corpus file appended to a followed file in three chunks: the follower ends on what the file holds."""
    data = open(corpus[name], "rb").read()
    lines = data.splitlines(keepends=True)
    path = tmp_path / "followed.jsonl"
    path.write_bytes(lines[0])
    src = opened(str(path), follow=True)
    if src is None:
        pytest.skip("the reader refuses its first line")
    whole = opened(corpus[name])
    if whole is None:
        pytest.skip("the reader refuses this file whole (one line)")
    app = VgtuiApp([src], fps=20)
    async with app.run_test(size=(120, 40)) as pilot:
        m = app.main
        cut = [1, max(len(lines) // 3, 1), max(2 * len(lines) // 3, 1), len(lines)]
        for a, b in zip(cut, cut[1:]):
            with open(path, "ab") as f:
                f.writelines(lines[a:b])
            await pilot.pause(0.3)  # a poll (FOLLOW_POLL_S)
        await wait_for(pilot, lambda: len(src.runs) == len(whole.runs)
                       and src.run.n_snapshots == whole.runs[-1].n_snapshots, what="the whole file")
        run = src.run
        if run.n_snapshots:
            await wait_for(pilot, lambda: m.state.position == (run.n_snapshots - 1, run.n_snapshots),
                           what="the cursor on the last snapshot")
        await pilot.press("home", "right", "tab", "tab")
        await drawn(pilot)
        no_failures(app)


# ---------------------------------------------------------------------------------------------- markup
MARKUP = ["[bold]fc1", "[/]", "[link=http://x]y[/link]", "fc[/bold]2", "[@click=app.quit]q[/]", "\\[x]"]


async def test_markup_in_every_string_is_shown_literally(tmp_path):
    """Layer names, labels, the activation, event values, metric names, the end message: shown as written, never
    read as markup (which would raise MarkupError or act: a link, a click that quits)."""
    import json

    from hostile_corpus import SIGMOID

    recs = [json.loads(line) for line in SIGMOID.read_text().splitlines() if line.strip()]
    names = {n: MARKUP[i % len(MARKUP)] + n for i, n in enumerate(recs[0]["layers"])}  # fc1 -> [bold]fc1 ...
    for r in recs:
        if r["type"] == "run":
            r["layers"] = [names[x] for x in r["layers"]]
            r["config"]["activation"] = "[red]sig[/]"
        elif r["type"] == "snapshot":
            for layer in r["layers"]:
                layer["name"] = names[layer["name"]]
            r["activation"] = "[red]sig[/]"
            r["metrics"] = {"[link=x]acc[/link]": 0.5}
        elif r["type"] == "end":
            r["status"], r["message"] = "completed", "[/] done [@click=app.quit]"
    recs.insert(5, {"type": "event", "step": 40, "elapsed_s": 1.0, "set": {"[b]lr": "[/]"}})
    path = tmp_path / "[red]run[link=x].jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    app = VgtuiApp([opened(str(path))], fps=20)
    async with app.run_test(size=(140, 40)) as pilot:
        m = app.main
        await drawn(pilot)
        status = text_of(m.query_one(StatusBar))
        assert "[red]run[link=x].jsonl" in status and "[link=x]acc[/link] 0.5" in status
        flow = text_of(m.query_one("#flow"))
        assert "━[bold]fc1" in flow and "━[/]fc2" in flow
        acts = text_of(m.query_one(ActivationPanel))
        assert "activations · [red]sig[/]" in acts
        await pilot.press("tab", "tab")
        await drawn(pilot)
        table = text_of(m.query_one(LayerTable))
        assert "[bold]fc1" in table and "[link=http://x]y[/link]fc3" in table
        await pilot.press("tab", "home")  # in the why view (in the layer table, home is the table's first row)
        await status_shows(pilot, "snapshot 1 /")
        m.notify("[/] a notice with [b]markup")  # notifications are text too
        await pilot.pause(0.2)
        no_failures(app)
    assert app.return_code in (None, 0)


# ---------------------------------------------------------------------------------------------- many metrics
async def test_ten_thousand_metrics_show_what_fits_and_q_answers(corpus):
    src = opened(corpus["many_metrics"])
    app = VgtuiApp([src], fps=20)
    async with app.run_test(size=(120, 40)) as pilot:
        m = app.main
        status = await status_shows(pilot, "9,994 more metrics not shown")
        assert "m0 0" in status and "m1 0.5" in status
        await wait_for(pilot, lambda: len(m.state.history.steps) == src.run.n_snapshots, what="the history")
        assert len(m.state.history.user) == 32  # folded: the first 32 names, the rest counted
        await pilot.press("home", "right", "space")
        await drawn(pilot)
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, timeout=5, what="q to quit")
    assert app.return_code == 0


# ---------------------------------------------------------------------------------------------- a real terminal
OSC_FROM_DATA = re.compile(rb"\x1b\][^\x07\x1b]*(PWNED|evil)")


@pytest.mark.parametrize("names, visible", [(("esc_header", "esc_layer_names"), True),
                                            (("esc_branch_config", "esc_metrics"), False),
                                            (("esc_end", "esc_events"), False), (("esc_keys", "esc_notice_in_name"), False)])
def test_escape_sequences_never_reach_the_terminal(corpus, names, visible):
    """`vgtui replay` of files with ESC ] 0 ; PWNED BEL, ESC [ 2 J, C1 CSI and bidi overrides in every string, on a
    pseudo-terminal, through every view: the bytes written hold no OSC from the data, and once Textual's own
    sequences are taken out no ESC, BEL or C1 byte is left; the strings show as text."""
    assert set(names) <= ESCAPES
    with Tty(["replay", *(corpus[n] for n in names)], size=(140, 45)) as t:
        t.wait_text("gradients ·", timeout=60)
        for key in (b"\t", b"\t", b"\t", b"\x1b[H", b"\x1b[C", b"o", b"p", b"\x1b[F"):
            t.send(key)
            time.sleep(0.4)
        if visible:  # the layer names are on screen (elsewhere the terminal may get a string in pieces)
            t.wait_text("PWNED", timeout=20)
        time.sleep(0.5)
        t.send(b"q")
        assert t.wait(30) == 0
    out = bytes(t.out)
    assert not OSC_FROM_DATA.search(out)
    rest = ANSI.sub(b"", out)
    assert b"\x1b" not in rest and b"\x07" not in rest
    assert b"\xc2\x9b" not in out and "\u202e".encode() not in out
    assert re.search(r"(␛|\\x1b)\]0;PWNED", t.text) or not visible  # shown as text (the reader or the screen makes it visible)


# ---------------------------------------------------------------------------------------------- the screen's own defence
RAW = "\x1b]0;PWNED\x07\x1b[2J\x9b31m\u202e\ud800[/]"


def _hostile_records(name: str):
    """A recorded run's records with RAW in every string the screen shows, as records (the reader's decoding, which
    makes them visible first, is bypassed: the screen must not rely on it)."""
    import dataclasses

    from vgtui.core.records import EndRecord, EventRecord, RunRecord, Snapshot

    from .replay import load

    out = []
    for r in load(name):
        if isinstance(r, RunRecord):
            r = dataclasses.replace(r, layers=tuple(dataclasses.replace(l, name=RAW + l.name) for l in r.layers),
                                    model=RAW, dataset=RAW, device=RAW, notice=RAW)
        elif isinstance(r, Snapshot):
            r = dataclasses.replace(r, activation=RAW, metrics={RAW: 0.5},
                                    layers=tuple(dataclasses.replace(l, name=RAW + l.name) for l in r.layers))
        elif isinstance(r, EndRecord):
            r = dataclasses.replace(r, message=RAW, layer=RAW + "fc5")
        out.append(r)
    out.insert(3, EventRecord(step=out[2].step, set={"activation": RAW}))
    return out


@pytest.mark.parametrize("fixture", ["sigmoid", "relu-diverged"])
async def test_control_characters_in_records_are_drawn_visible(fixture):
    """Records holding raw ESC, BEL, C1 and bidi characters in every string, played as a live run: every panel,
    title, the status line and the notifications draw them as visible text (no raw control character in any
    drawn line)."""
    from vgtui.core.records import NoticeRecord

    from .replay import ReplayBackend

    recs = _hostile_records(fixture)
    backend = ReplayBackend(recs)
    app = VgtuiApp(backend, fps=20)
    async with app.run_test(size=(140, 45)) as pilot:
        m = app.main
        await wait_for(pilot, lambda: m.state.end is not None, what="the run's end")
        backend.feed(NoticeRecord(RAW))
        await pilot.pause(0.3)
        for view in range(3):
            await drawn(pilot)
            await pilot.pause(0.1)
            lines = "\n".join(text_of(w) for w in app.screen.query("*") if w.display and w.region.area)
            for c in ("\x1b", "\x07", "\x9b", "\u202e", "\ud800"):
                assert c not in lines, (view, repr(c))
            lines.encode("utf-8")  # what a terminal's encoding takes
            await pilot.press("tab")
        said = [n.message for n in app._notifications]
        assert any("PWNED" in n for n in said) and not any(c in n for n in said for c in "\x1b\x07\x9b")
        assert "␛]0;PWNED␇" in text_of(m.query_one(StatusBar)) + lines
        no_failures(app)


# ---------------------------------------------------------------------------------------------- odd but valid data
def _odd_files(tmp_path) -> dict[str, str]:
    import json

    from hostile_corpus import SIGMOID

    recs = [json.loads(line) for line in SIGMOID.read_text().splitlines() if line.strip()]
    snaps = [i for i, r in enumerate(recs) if r["type"] == "snapshot"]
    out = {}

    def put(name, rs):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rs))
        out[name] = str(path)

    big = [dict(r) for r in recs]  # steps near the end of int64, a clock of 30,000 years, a total to match
    for r in big:
        if "step" in r:
            r["step"] = r["step"] * 10 ** 16
        if "elapsed_s" in r:
            r["elapsed_s"] = r["elapsed_s"] * 1e12
    big[0] = {**big[0], "total_steps": 120 * 10 ** 16}
    put("huge_steps", big)
    nonfinite = json.loads(json.dumps(recs))
    for k, i in enumerate(snaps):  # every float of every snapshot non-finite, zero counts in every histogram
        r = nonfinite[i]
        r["loss"], r["loss_avg"] = ("nan", "inf") if k % 2 else ("inf", "-inf")
        for layer in r["layers"]:
            for f in ("grad_norm", "grad_mean_abs", "grad_data_ratio", "update_data_ratio", "act_mean"):
                if f in layer:
                    layer[f] = ["nan", "inf", "-inf"][k % 3]
            for h in ("grad_hist", "act_hist"):
                if isinstance(layer.get(h), dict):
                    layer[h]["counts"] = [0] * len(layer[h]["counts"])
    put("all_nonfinite", nonfinite)
    empty = json.loads(json.dumps(recs))
    for i in snaps:
        empty[i]["layers"] = []
    put("no_layers_anywhere", empty)
    one = json.loads(json.dumps(recs))  # a model of one layer, named as long as a screen
    long = "x" * 300
    one[0]["layers"] = [long]
    for i in snaps:
        one[i]["layers"] = [{**one[i]["layers"][-1], "name": long}]
    put("one_long_layer", one)
    return out


async def test_odd_but_valid_values_draw_in_every_view(tmp_path):
    for name, path in _odd_files(tmp_path).items():
        src = opened(path)
        assert src is not None, name
        app = VgtuiApp([src], fps=20)
        async with app.run_test(size=(120, 40)) as pilot:
            m = app.main
            await pilot.press("home", "right")
            for _ in range(3):
                await drawn(pilot)
                await pilot.press("m", "tab")
            await pilot.press("l", "space", "end")
            await drawn(pilot)
            if src.run.n_snapshots:  # (the reader may skip snapshots without layers as damaged: none to show)
                assert m.state.snap is not None, (name, m.state.damaged)
                assert m.state.snap.step == int(src.run.snapshot_steps[-1])
            no_failures(app)
        assert app.return_code in (None, 0), name


def test_the_summary_without_a_terminal_writes_no_control_character(corpus):
    import subprocess
    import sys

    for name in ("esc_header", "esc_branch_config", "esc_notice_in_name"):
        r = subprocess.run([sys.executable, "-m", "vgtui", "replay", corpus[name]], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=60)
        out = r.stdout + r.stderr
        assert r.returncode == 0 and b"run 1:" in r.stdout
        assert not any(c in out for c in (b"\x1b", b"\x07", b"\xc2\x9b", "\u202e".encode()))
