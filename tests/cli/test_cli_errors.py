"""Entry points as a user meets them: our own errors as one line (file:line or config field) and
exit status 2, the traceback only on request; secrets from overrides nowhere on disk or screen."""

from __future__ import annotations

import json

import pytest

from tests.helpers.cli import assert_one_line_error, files_benchmark, run

SECRET_KEY = "sk-proj-" + "Zq7Xw2Vb" * 5  # shaped like an OpenAI key
URL_PASSWORD = "pa55w0rd-in-url"


def test_bad_input_is_one_line_naming_file_and_line_and_full_error_shows_the_traceback(
    toy_files, tmp_path
):
    toy_files["qrels"].write_text("q1 0 d1 2\nq1 0 d1 yes\n")
    proc = run(*files_benchmark(toy_files, tmp_path / "a"))
    assert_one_line_error(
        proc, f"{toy_files['qrels']}:2: relevance grade must be an integer, got 'yes'"
    )
    verbose = run(*files_benchmark(toy_files, tmp_path / "b"), env={"HYDRA_FULL_ERROR": "1"})
    assert (
        verbose.returncode != 0 and "Traceback" in verbose.stderr and "DataError" in verbose.stderr
    )


@pytest.mark.parametrize(
    "override, expected",
    [
        ("metrics=[nDGC@10]", "metrics: unknown or malformed metric 'nDGC@10'"),
        (
            "metrics=[]",
            "benchmark.measures (the metrics list): expected at least one metric, found none",
        ),
        ("benchmark.depth=-1", "benchmark.depth: expected an integer depth >= 1, found -1"),
    ],
)
def test_config_mistakes_name_the_field(toy_files, tmp_path, override, expected):
    line = assert_one_line_error(run(*files_benchmark(toy_files, tmp_path, override)), expected)
    if "nDGC" in override:
        assert "nDCG" in line and "RR" in line  # the valid names are listed


def test_stage_depth_and_missing_model_path_are_named_before_anything_loads(toy_files, tmp_path):
    assert_one_line_error(
        run(
            *files_benchmark(
                toy_files, tmp_path / "a", "pipeline=pointwise", "pipeline.stages.pointwise.depth=0"
            )
        ),
        "pipeline.stages.pointwise.depth: expected an integer depth >= 1, found 0",
    )
    missing = tmp_path / "no" / "such" / "export"
    assert_one_line_error(
        run(
            *files_benchmark(
                toy_files, tmp_path / "b", "pipeline=pointwise", f"pointwise.model={missing}"
            )
        ),
        f"{missing}: model directory not found",
    )


def test_cot_connection_error_names_the_url_without_credentials(toy_files, tmp_path):
    proc = run(
        "-m",
        "dear.cot",
        f"candidates.path={toy_files['json']}",
        "endpoint=local",
        f"endpoint.base_url=http://user:{URL_PASSWORD}@127.0.0.1:9/v1",
        "endpoint.max_retries=0",
        f"output={tmp_path / 'cot.jsonl'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_one_line_error(proc, "endpoint.base_url http://user:***@127.0.0.1:9/v1: cannot connect")
    assert URL_PASSWORD not in proc.stderr + proc.stdout


def test_report_verbose_shows_the_traceback(tmp_path):
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "0" / ".hydra" / "config.yaml").write_text("benchmark: {name: x}\n")
    (tmp_path / "0" / "metrics.json").write_text("{not json")
    assert_one_line_error(
        run("-m", "dear.report", str(tmp_path), "--rows", "B=benchmark.name"), "not valid JSON"
    )
    verbose = run("-m", "dear.report", str(tmp_path), "--rows", "B=benchmark.name", "--verbose")
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr


def test_secrets_in_overrides_reach_no_file_and_no_output(toy_files, tmp_path):
    out = tmp_path / "out"
    secrets = [
        f"+endpoint_test.api_key_env={SECRET_KEY}",
        f"+endpoint_test.base_url=http://me:{URL_PASSWORD}@host/v1",
        "+endpoint_test.api_key=plainsecretvalue",
    ]
    proc = run(*files_benchmark(toy_files, out, *secrets))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / ".hydra" / "overrides.yaml").is_file() and (out / "repro.json").is_file()
    assert "+endpoint_test.api_key=***" in (out / ".hydra" / "overrides.yaml").read_text()
    written = (
        proc.stdout
        + proc.stderr
        + "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    )
    for secret in (SECRET_KEY, URL_PASSWORD, "plainsecretvalue"):
        assert secret not in written
    # A failing run: the secret inside a path that ends up in the error message is masked too.
    failing = run(
        *files_benchmark(
            toy_files, tmp_path / "f", f"benchmark.qrels=http://me:{URL_PASSWORD}@host/q"
        )
    )
    assert_one_line_error(failing, "unknown ir_datasets id 'http://me:***@host/q'")
    assert URL_PASSWORD not in failing.stderr + failing.stdout
    failed_files = "".join(
        p.read_text(errors="replace") for p in (tmp_path / "f").rglob("*") if p.is_file()
    )
    assert URL_PASSWORD not in failed_files
    assert json.loads((out / "metrics.json").read_text())["first_stage"]


def test_secrets_are_found_by_key_shape_and_url_and_masked_in_any_text():
    from dear.utils.masking import mask, override_secrets, secrets_in

    config = {
        "endpoint": {
            "api_key_env": SECRET_KEY,
            "base_url": f"http://u:{URL_PASSWORD}@h/v1",
            "api_key": "abc",
            "max_new_tokens": 64,
            "tokenizer": "gpt2",
        }
    }
    found = secrets_in(config)
    assert found == {SECRET_KEY, URL_PASSWORD, "abc"}
    assert override_secrets(
        [f"endpoint.api_key_env={SECRET_KEY}", "hf_token=hf_short", "seed=1"]
    ) == {SECRET_KEY, "hf_short"}
    text = f"failed: {SECRET_KEY} at http://u:{URL_PASSWORD}@h/v1 (abc is too short to mask as a literal)"
    assert (
        mask(text, found)
        == "failed: *** at http://u:***@h/v1 (abc is too short to mask as a literal)"
    )


def test_train_and_precompute_report_config_mistakes_in_one_line_before_any_work(
    tmp_path, flag_jsonl
):
    proc = run("train.py", "evaluation.depth=0", f"hydra.run.dir={tmp_path / 'train'}")
    assert_one_line_error(
        proc, "evaluation.stages.teacher.depth: expected an integer depth >= 1, found 0"
    )
    assert not (tmp_path / "train" / "checkpoints").exists()
    missing = tmp_path / "no" / "such" / "teacher"
    proc = run(
        "-m",
        "dear.distill.precompute",
        "data=flagembedding",
        f"data.train.path={flag_jsonl}",
        "teacher=rankllama_13b",
        f"teacher.model={missing}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'pre'}",
    )
    assert_one_line_error(proc, f"{missing}: model directory not found")
