"""Run directories as a user meets them: a finished run is never changed by a later one (it is
refused before anything is written), inputs are read before a run writes anything, a multirun's
bad job fails alone, and Hydra's own config errors are one line too."""

from __future__ import annotations

import json

import pytest

from dear.errors import DataError
from dear.utils.repro import FINISHED, RECORD, refuse_finished
from tests.helpers.cli import assert_one_line_error, files_benchmark, run


def snapshot(directory) -> dict:
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_a_finished_run_is_refused_and_left_byte_for_byte(toy_files, tmp_path):
    out = tmp_path / "run"
    done = run(*files_benchmark(toy_files, out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / RECORD).read_text())[FINISHED]
    before = snapshot(out)
    assert {".hydra/config.yaml", ".hydra/overrides.yaml", "metrics.json", "results.md"} <= set(
        before
    )
    toy_files["qrels"].write_text("q1 0 d1 yes\n")  # a bad input this time
    again = run(*files_benchmark(toy_files, out))
    assert_one_line_error(
        again, f"{out}: this run directory holds a finished run ({RECORD} says it finished at"
    )
    assert snapshot(out) == before


def test_a_run_with_a_bad_input_writes_no_record_and_no_results(toy_files, tmp_path):
    out = tmp_path / "run"
    toy_files["qrels"].write_text("q1 0 d1 2\nq1 0 d2 x\n")
    proc = run(*files_benchmark(toy_files, out))
    assert_one_line_error(proc, f"{toy_files['qrels']}:2:")
    assert not any((out / name).exists() for name in (RECORD, "metrics.json", "results.md", "runs"))


def test_older_finished_runs_and_half_written_records(tmp_path):
    refuse_finished(tmp_path)  # empty: fine
    # a killed writer's leftovers
    (tmp_path / RECORD).write_text('{"command": "python evaluate.py", "fin')
    refuse_finished(tmp_path)
    (tmp_path / RECORD).write_text('["not", "a", "record"]')
    refuse_finished(tmp_path)
    (tmp_path / "metrics.json").write_text("{}")  # a run from before the record had FINISHED
    with pytest.raises(DataError, match="it holds metrics.json"):
        refuse_finished(tmp_path)


def test_a_bad_job_of_a_multirun_fails_alone(toy_files, tmp_path):
    bad = tmp_path / "bad_qrels.txt"
    bad.write_text("q1 0 d1 x\n")
    proc = run(
        "evaluate.py",
        "-m",
        "benchmark=files",
        f"benchmark.candidates={toy_files['run']}",
        f"benchmark.qrels={toy_files['qrels']},{bad},{toy_files['qrels']}",
        f"hydra.sweep.dir={tmp_path / 'm'}",
        "+endpoint_test.api_key=plainsecretvalue",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(
        line.startswith("error: [#1 ") and f"{bad}:1:" in line for line in errors
    ), errors
    assert "plainsecretvalue" not in "".join(errors)  # the job's overrides are named, masked
    finished = sorted(p.parent.name for p in (tmp_path / "m").glob("*/metrics.json"))
    assert finished == ["0_files", "2_files"]  # the job after the bad one ran


@pytest.mark.parametrize(
    "override, expected",
    [
        ("no_such_option=1", "Could not override 'no_such_option'"),
        ("benchmark=no_such_benchmark", "Could not find 'benchmark/no_such_benchmark'"),
        (
            "metrics=nDCG@10",
            "metrics: expected a list of ir_measures names, found 'nDCG@10' (write metrics=[nDCG@10]",
        ),
    ],
)
def test_hydra_config_errors_are_one_line(override, expected, tmp_path):
    assert_one_line_error(run("evaluate.py", override, f"hydra.run.dir={tmp_path}"), expected)


def test_a_filesystem_error_is_one_line_naming_the_file(toy_files, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "runs").write_text("a file where the runs folder goes")
    proc = run(*files_benchmark(toy_files, out))
    assert_one_line_error(proc, f"File exists: '{out / 'runs'}'")


def test_a_full_disk_is_one_line():
    import errno

    from dear.cli import one_line, our_error

    full = OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.json")
    try:
        try:
            raise full
        except OSError as e:
            raise RuntimeError("while writing") from e
    except RuntimeError as e:
        assert (
            one_line(our_error(e)) == "[Errno 28] No space left on device: '/runs/x/metrics.json'"
        )
    # an OSError naming no file is a bug: a traceback
    assert our_error(OSError("no file named")) is None
