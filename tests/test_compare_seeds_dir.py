"""`vgtui compare --metrics-dir DIR --seed S --seeds N` checks, before anything trains, the files it will write: one
per configuration and seed, S..S+N-1 (it once checked seeds 0..N-1 whatever --seed said, so a bad entry at a later
seed's name stopped the comparison mid-way, exit 4, after the first seed had trained)."""

import os

import pytest

from vgtui.commands import compare

TINY = ["--depth", "1", "--width", "8", "--max-steps", "2"]


@pytest.mark.parametrize("make, says", [(lambda p: p.mkdir(), "is a directory"),
                                        (lambda p: os.mkfifo(p), "is a FIFO (named pipe)")])
def test_the_files_of_seeds_from_seed_are_checked_before_anything_trains(capsys, tmp_path, make, says):
    bad = tmp_path / "sigmoid.seed4.jsonl"  # the second seed's file, from --seed 3
    make(bad)
    status = compare.main(["sigmoid", "--seed", "3", "--seeds", "2", *TINY, "--metrics-dir", str(tmp_path)])
    out = capsys.readouterr()
    assert status == 2 and out.out == ""
    assert out.err.splitlines()[-1] == (f"vgtui compare: error: --metrics-dir {tmp_path}: {bad}: {says}; compare "
                                        "writes one file per configuration there: move that away, or choose another "
                                        "--metrics-dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sigmoid.seed4.jsonl"]  # seed 3 never trained


def test_the_checked_names_are_the_written_names(capsys, tmp_path):
    status = compare.main(["sigmoid", "--seed", "3", "--seeds", "2", *TINY, "--metrics-dir", str(tmp_path), "--json"])
    capsys.readouterr()
    assert status == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["sigmoid.seed3.jsonl", "sigmoid.seed4.jsonl"]
    assert [os.path.basename(compare.metrics_path(str(tmp_path), "sigmoid", s, 2)) for s in (3, 4)] == written
