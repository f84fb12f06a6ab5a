"""What repro.json records about loaded models and tokenizers: it changes exactly when what decides
scores changes (weights' files, tokenizer contents, dtype), not with where the files sit."""

from __future__ import annotations

import shutil

import torch

from dear.models import provenance
from dear.models.loading import load_sequence_classifier, load_tokenizer
from dear.utils import repro


def test_loading_records_revision_files_dtype_device_and_tokenizer(tiny_bert_cls):
    repro._LOADED.clear()
    load_sequence_classifier(tiny_bert_cls, dtype="float32", device="cpu")
    loaded = repro.loaded()
    model, tokenizer = loaded[f"model:{tiny_bert_cls}"], loaded[f"tokenizer:{tiny_bert_cls}"]
    # local: no commit
    assert model["dtype"] == "float32" and model["device"] == "cpu" and model["revision"] is None
    assert model["files"] == provenance.files_fingerprint(model["path"])
    assert len(tokenizer["fingerprint"]) == 16 and tokenizer["vocab_size"] > 0
    load_sequence_classifier(tiny_bert_cls, dtype="bfloat16", device="cpu")
    assert repro.loaded()[f"model:{tiny_bert_cls}"]["dtype"] == "bfloat16"


def test_files_fingerprint_follows_contents_not_location(tiny_bert_cls, tmp_path):
    copy = shutil.copytree(tiny_bert_cls, tmp_path / "copy")
    assert provenance.files_fingerprint(copy) == provenance.files_fingerprint(tiny_bert_cls)
    config = copy / "config.json"
    config.write_text(config.read_text().replace("}", ', "extra": 1}', 1))
    assert provenance.files_fingerprint(copy) != provenance.files_fingerprint(tiny_bert_cls)
    assert provenance.files_fingerprint(tmp_path / "absent") is None


def test_tokenizer_fingerprint_changes_with_what_decides_token_ids(tiny_bert_cls):
    a, b = load_tokenizer(tiny_bert_cls), load_tokenizer(tiny_bert_cls)
    assert provenance.tokenizer_fingerprint(a) == provenance.tokenizer_fingerprint(b)
    b.chat_template = "{{ messages }}"
    assert provenance.tokenizer_fingerprint(a) != provenance.tokenizer_fingerprint(b)
    c = load_tokenizer(tiny_bert_cls)
    c.add_tokens(["<new-token>"])
    assert provenance.tokenizer_fingerprint(a) != provenance.tokenizer_fingerprint(c)


def test_hub_commit_read_from_the_snapshot_path(tmp_path):
    snapshot = tmp_path / "models--org--m" / "snapshots" / "0123abcd" / "config.json"
    assert provenance._commit(str(snapshot.parent)) == "0123abcd"
    assert provenance._commit(str(snapshot.parent / "sub")) == "0123abcd"
    assert provenance._commit(str(tmp_path / "snapshots")) is None  # a directory merely named so
    assert provenance.device_class(torch.device("cpu")) == "cpu"
