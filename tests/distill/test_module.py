"""The Stage-1 LightningModule on tiny random models: it learns, and α does what it says."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from dear.distill.data import DistillDataModule
from dear.distill.losses import DistillLoss
from dear.distill.module import DistillModule
from tests.helpers.distill import N_QUERIES, POOL, TEACHER_PREFERS, FixtureSource, make


def fit(dm, module, steps):
    L.seed_everything(0)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=dm)
    return trainer


@torch.inference_mode()
def group_scores(dm, module):
    """(6, 8) student scores over each query's full pool [positive, negatives...]."""
    module.eval()
    pairs = [(q.qid, d) for q in dm.queries for d in q.docids]
    return module(dm.collate.inputs(pairs)).view(N_QUERIES, POOL + 1).numpy()


def test_fast_dev_run(tiny_bert_cls, tmp_path):
    dm, module = make(tiny_bert_cls, tmp_path, alpha=0.5)
    trainer = L.Trainer(
        accelerator="cpu",
        fast_dev_run=True,
        logger=False,
        enable_progress_bar=False,
        use_distributed_sampler=False,
    )
    trainer.fit(module, datamodule=dm)
    assert (
        tmp_path / "teacher"
    ).is_dir() and dm.teacher.cache.complete  # the cache was computed on the way


@pytest.mark.parametrize("rank", ["ranknet_eq5", "ranknet"])
def test_training_lowers_loss_and_ranks_positives_first(tiny_bert_cls, tmp_path, rank):
    dm, module = make(tiny_bert_cls, tmp_path, alpha=0.0, rank=rank)
    dm.setup()
    batch = dm.collate([dm.train_set[i] for i in range(N_QUERIES)])

    def loss():
        module.eval()
        with torch.inference_mode():
            return module.loss(module(batch).view(N_QUERIES, -1), batch["labels"])["loss"].item()

    before = loss()
    fit(dm, module, steps=40)
    # eq. 5 can reach 0; the reference's soft targets (0.73 over negatives, 0.5 between them) bottom out
    # at its targets' entropy: 0.6 for a group of 8 — so it only has to get close to that floor.
    floor = 0.0 if rank == "ranknet_eq5" else _soft_ranknet_floor(POOL + 1)
    assert loss() - floor < 0.2 * (before - floor)
    assert (group_scores(dm, module).argmax(1) == 0).all()  # every positive ranked first


def _soft_ranknet_floor(m: int) -> float:
    """The reference RankNet's minimum over a group [1, 0 × (m − 1)]: the mean target entropy."""
    import math

    t = 1 / (1 + math.exp(-1))
    pos_pairs, neg_pairs = m - 1, (m - 1) * (m - 2) / 2
    entropy = -(t * math.log(t) + (1 - t) * math.log(1 - t))
    return (pos_pairs * entropy + neg_pairs * math.log(2)) / (pos_pairs + neg_pairs)


def test_alpha_one_moves_student_toward_teacher(tiny_bert_cls, tmp_path):
    dm, module = make(tiny_bert_cls, tmp_path, alpha=1.0)
    fit(dm, module, steps=1)  # set up (and cache) before measuring
    start = (group_scores(dm, module).argmax(1) == TEACHER_PREFERS).mean()
    fit(dm, module, steps=40)
    end = (group_scores(dm, module).argmax(1) == TEACHER_PREFERS).mean()
    assert end == 1.0 and end > start


def test_alpha_zero_means_the_teacher_has_no_effect(tiny_bert_cls, tmp_path):
    results = []
    for sign in (1.0, -1.0):  # two opposite teachers
        dm, module = make(tiny_bert_cls, tmp_path / f"t{sign}", alpha=0.0, sign=sign)
        fit(dm, module, steps=8)
        assert not (tmp_path / f"t{sign}" / "teacher").exists()  # never scored, never needed
        results.append(group_scores(dm, module))
    np.testing.assert_array_equal(results[0], results[1])
    dm, module = make(tiny_bert_cls, tmp_path / "kd", alpha=0.5, sign=-1.0)
    fit(dm, module, steps=8)
    assert not np.allclose(group_scores(dm, module), results[0])  # the same run with KD differs


def test_export_loads_with_peft_alone_and_scores_like_our_engine(tiny_llama_cls, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from dear.data.contract import Candidate, Query, Ranking
    from dear.rerank.pointwise import CrossEncoderScorer

    student = {
        "model": tiny_llama_cls,
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "pooling": "last",
        "dtype": "float32",
        "template": {"query_max_len": 16, "doc_max_len": 24},
    }
    module = DistillModule(student, DistillLoss("ranknet", alpha=0.0))
    with torch.no_grad():  # make the adapter non-trivial
        for n, p in module.named_parameters():
            if "lora_B" in n:
                p.normal_()
    export = module.export(tmp_path / "export")
    assert (export / "adapter_config.json").is_file() and (export / "dear_scorer.json").is_file()

    ranking = Ranking(
        Query("q", "tell me about llamas"),
        [Candidate("a", "llamas are camelids"), Candidate("b", "cats")],
    )
    ours = CrossEncoderScorer.from_export(str(tmp_path)).score([ranking])[0]  # run dir works too
    plain = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(tiny_llama_cls, num_labels=1),
        str(export),
    ).eval()
    ids, _ = CrossEncoderScorer.from_export(str(export)).encode([ranking])
    with torch.inference_mode():
        theirs = [plain(input_ids=torch.tensor([x])).logits.item() for x in ids]
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    with torch.inference_mode():
        trained = module(
            module_batch := {
                "input_ids": torch.tensor([ids[0]]),
                "attention_mask": torch.ones(1, len(ids[0]), dtype=torch.long),
            }
        )
    assert trained.item() == pytest.approx(ours[0], abs=1e-5) and module_batch


def test_qlora_student_trains_on_cpu(tiny_llama_cls):
    student = {
        "model": tiny_llama_cls,
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "quantization": {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": "float32",
        },
        "pooling": "last",
        "dtype": "float32",
    }
    module = DistillModule(student, DistillLoss("pointce", alpha=0.0))
    assert "4bit" in type(module._net.model.layers[0].self_attn.q_proj.base_layer).__name__
    ids = torch.randint(10, 200, (4, 9))
    scores = module({"input_ids": ids, "attention_mask": torch.ones_like(ids)}).view(1, 4)
    module.loss(scores, torch.tensor([[1.0, 0, 0, 0]]))["loss"].backward()
    grads = [p.grad for n, p in module.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None for g in grads)


def test_checkpoints_keep_trainable_weights_whatever_the_wrapper_prefixes():
    from dear.utils.state import trainable_state

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    net[0].weight.requires_grad_(False)
    net[0].bias.requires_grad_(False)
    full = {"0.weight": 1, "0.bias": 2, "1.weight": 3, "1.bias": 4}  # a full (unwrapped) state dict
    assert trainable_state(net, full) == {"1.weight": 3, "1.bias": 4}

    class Wrapped(torch.nn.Module):  # FSDP (use_orig_params) names parameters through its wrapper
        def __init__(self):
            super().__init__()
            self._fsdp_wrapped_module = net

    assert trainable_state(
        Wrapped(), {"_fsdp_wrapped_module.1.bias": 4, "1.weight": 3, "0.bias": 2}
    ) == {"_fsdp_wrapped_module.1.bias": 4, "1.weight": 3}


def test_bi_encoder_student_trains_and_its_export_scores_as_it_was_trained(tiny_bert_cls, tmp_path):
    from dear.data.contract import Candidate, Query, Ranking
    from dear.rerank.pointwise import BiEncoderScorer, scorer_from_export

    student = {
        "model": tiny_bert_cls,
        "kind": "bi_encoder",
        "lora": None,
        "dtype": "float32",
        "max_len": 24,
        "query_prefix": "q: ",
        "doc_prefix": "d: ",
        "logit_scale": 20.0,
    }
    # alpha = 0: no teacher
    dm = DistillDataModule(
        FixtureSource(),
        student,
        None,
        group_size=POOL + 1,
        batch_size=3,
        cache_dir=str(tmp_path / "teacher"),
        seed=0,
    )
    module = DistillModule(
        student, DistillLoss("ranknet_eq5", alpha=0.0), lr=1e-2, warmup_ratio=0.0
    )
    dm.setup()
    batch = dm.collate([dm.train_set[i] for i in range(N_QUERIES)])
    assert set(batch) >= {"query_ids", "doc_ids", "labels"} and batch["query_ids"].shape[1] <= 24

    def loss():
        module.eval()
        with torch.inference_mode():
            return module.loss(module(batch).view(N_QUERIES, -1), batch["labels"])["loss"].item()

    before = loss()
    fit(dm, module, steps=30)
    assert loss() < 0.5 * before
    export = module.export(tmp_path / "export")
    # as conf/pointwise/export.yaml passes
    scorer = scorer_from_export(str(tmp_path), dtype="auto", max_batch_pairs=64)
    assert (
        isinstance(scorer, BiEncoderScorer) and scorer.logit_scale == 20.0 and scorer.max_len == 24
    )
    q = dm.queries[0]
    ranking = Ranking(
        Query(q.qid, dm.collate.queries[q.qid]),
        [Candidate(d, *reversed(dm.collate.docs.get_many([d])[d])) for d in q.docids],
    )
    ours = scorer.score([ranking])[0]
    # training forward == export
    np.testing.assert_allclose(ours, group_scores(dm, module)[0], atol=1e-5)
    assert not (export / "adapter_config.json").exists()  # a plain encoder directory
    with pytest.raises(ValueError, match="fully fine-tuned"):
        DistillModule({**student, "lora": {"r": 4}}, DistillLoss("ranknet", alpha=0.0))


def test_export_names_a_base_this_package_builds_as_configured(tmp_path):
    # As Stage 2's export (dear.models.loading.record_base): a moved export resolves its base again.
    import json

    student = {
        "model": "tiny:llama-seqcls",
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "pooling": "last",
        "dtype": "float32",
        "template": {"query_max_len": 16, "doc_max_len": 24},
    }
    export = DistillModule(student, DistillLoss("ranknet", alpha=0.0)).export(tmp_path / "export")
    config = json.loads((export / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny:llama-seqcls"
