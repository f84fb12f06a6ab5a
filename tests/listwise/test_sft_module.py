"""Listwise SFT module: LoRA training steps, a second named adapter beside Stage 1, export and reload,
and (slow) a tiny model trained until its rankings parse cleanly and beat the input order."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dear.config import CONF_DIR
from dear.errors import ConfigError
from dear.eval.judges import RelevanceJudge
from dear.listwise.backends.hf import TransformersBackend
from dear.listwise.reranker import ListwiseReranker
from dear.listwise.sft_data import ListwiseSFTDataModule, collate, tokenize_example
from dear.listwise.sft_module import ListwiseSFTModule
from dear.listwise.synthetic import synthetic_examples, synthetic_rankings

LORA = {
    "r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "target_modules": ["q_proj", "v_proj", "o_proj"],
    "modules_to_save": ["lm_head"],
}
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny matrices, one thread


@pytest.fixture(scope="module")
def compact():
    return instantiate(OmegaConf.load(CONF_DIR / "prompt" / "compact.yaml"))


def trainer(steps: int, **kw) -> L.Trainer:
    return L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kw,
    )


def stage1_adapter(base: str, out) -> str:
    """A Stage-1 style LoRA (sequence classifier on the same base) with non-zero weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    net = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    net = get_peft_model(
        net, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lora_B" in name:
                p.fill_(0.5)
    net.save_pretrained(out)
    return str(out)


def test_training_lowers_the_response_loss_and_touches_only_the_adapter(tiny_llama_causal, compact):
    examples = synthetic_examples(compact, 32, 3, seed=0)
    module = ListwiseSFTModule(
        tiny_llama_causal, LORA, lr=1e-2, warmup_ratio=0.0, scheduler="constant"
    )
    frozen = {
        n: p.detach().clone() for n, p in module.model.named_parameters() if not p.requires_grad
    }
    batch = collate(
        [tokenize_example(module.tokenizer, e) for e in examples[:8]], module.tokenizer.pad_token_id
    )
    with torch.no_grad():
        before = module(batch).item()
    trainer(40).fit(
        module, datamodule=ListwiseSFTDataModule(tiny_llama_causal, examples, batch_size=8)
    )
    with torch.no_grad():
        after = module(batch).item()
    assert after < 0.5 * before  # the fixed answer format is learned in a few steps
    assert all(
        torch.equal(p, frozen[n]) for n, p in module.model.named_parameters() if not p.requires_grad
    )

    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and all(".listwise." in k for k in checkpoint["state_dict"])
    fresh = ListwiseSFTModule(tiny_llama_causal, LORA)
    # as Lightning resumes
    fresh.load_state_dict(checkpoint["state_dict"], strict=fresh.strict_loading)
    with torch.no_grad():
        assert fresh(batch).item() == pytest.approx(after)


def test_second_adapter_shares_the_base_with_stage1_and_only_it_trains(
    tiny_llama_causal, compact, tmp_path
):
    stage1 = stage1_adapter(tiny_llama_causal, tmp_path / "stage1")
    module = ListwiseSFTModule(tiny_llama_causal, LORA, pointwise_adapter=stage1, lr=3e-3)
    assert (
        set(module.model.peft_config) == {"listwise", "pointwise"}
        and module.model.active_adapter == "listwise"
    )
    pointwise = {
        n: p.detach().clone() for n, p in module.model.named_parameters() if ".pointwise." in n
    }
    assert pointwise and all(
        not p.requires_grad for n, p in module.model.named_parameters() if ".pointwise." in n
    )
    # Stage-1 weights, loaded
    assert all(torch.all(p == 0.5) for n, p in pointwise.items() if "lora_B" in n)
    data = ListwiseSFTDataModule(tiny_llama_causal, synthetic_examples(compact, 8), batch_size=4)
    trainer(3).fit(module, datamodule=data)
    assert all(
        torch.equal(p, pointwise[n])
        for n, p in module.model.named_parameters()
        if ".pointwise." in n
    )

    export = module.export(tmp_path / "export")
    config = json.loads((export / "adapter_config.json").read_text())
    assert (
        config["task_type"] == "CAUSAL_LM"
        and config["base_model_name_or_path"] == tiny_llama_causal
    )
    assert not (export / "pointwise").exists() and not (export / "listwise").exists()
    from safetensors.torch import load_file

    assert not any("pointwise" in k for k in load_file(export / "adapter_model.safetensors"))


def test_stage1_adapter_on_another_base_is_refused(tiny_llama_causal, tiny_llama_cls, tmp_path):
    stage1 = stage1_adapter(tiny_llama_cls, tmp_path / "other")
    with pytest.raises(ValueError, match="can only share a base they were both trained on"):
        ListwiseSFTModule(tiny_llama_causal, LORA, pointwise_adapter=stage1)


def test_export_reloads_for_generation_with_the_same_outputs(tiny_llama_causal, compact, tmp_path):
    module = ListwiseSFTModule(
        tiny_llama_causal,
        LORA,
        lr=3e-3,
        generation={"max_new_tokens": 16, "dtype": "float32"},
        reranker=lambda backend: ListwiseReranker(backend, compact, 3, 2),
    )
    data = ListwiseSFTDataModule(tiny_llama_causal, synthetic_examples(compact, 40), batch_size=8)
    trainer(20).fit(module, datamodule=data)
    export = module.export(tmp_path / "export")
    assert OmegaConf.load(export / "module.yaml").lora.r == 8

    reranker = module.export_reranker(export)
    chats = [e.messages() for e in synthetic_examples(compact, 3, seed=5)]
    reloaded = [g.text for g in reranker.backend.generate(chats)]
    module.model.eval()
    in_memory = []
    for chat in chats:
        ids = torch.tensor([reranker.backend.renderer.ids(chat)])
        with torch.no_grad():
            out = module.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                generation_config=reranker.backend.generation_config,
            )
        in_memory.append(
            reranker.backend._completion(out[0, ids.size(1) :].tolist(), ids.size(1)).text
        )
    assert reloaded == in_memory


@pytest.mark.slow
def test_tiny_model_learns_the_synthetic_task_until_it_parses_and_beats_input_order(
    compact, tmp_path
):
    """Acceptance: train until generations parse cleanly and rank better than the input order."""
    from dear.models.loading import resolve_model_path

    model = resolve_model_path("tiny:llama-causal-h64-l4")
    rankings, qrels = synthetic_rankings(100, 3, seed=12345)
    judge = RelevanceJudge(qrels, ["nDCG@1", "nDCG@10"])
    baseline = judge.evaluate({r.qid: r for r in rankings})[0]
    results = []

    class UntilGood(L.Callback):
        def on_train_batch_end(self, trainer_, module, outputs, batch, batch_idx):
            if (trainer_.global_step % 200) or not trainer_.global_step:
                return
            reranker = ListwiseReranker(
                TransformersBackend(
                    str(module.export(tmp_path / "export")),
                    max_new_tokens=96,
                    batch_size=100,
                    dtype="float32",
                ),
                compact,
                20,
                10,
            )
            reranked = reranker.rerank(rankings)
            scores = judge.evaluate({r.qid: r for r in reranked})[0]
            results.append((trainer_.global_step, reranker.stage_metrics()["parse_clean"], scores))
            if results[-1][1] >= 0.95 and scores["nDCG@1"] >= 0.9:
                trainer_.should_stop = True

    examples = synthetic_examples(compact, 8000, 3, seed=0)
    data = ListwiseSFTDataModule(model, examples, val=examples[:64], batch_size=16)
    module = ListwiseSFTModule(
        model,
        {**LORA, "r": 16, "lora_alpha": 32, "target_modules": "all-linear"},
        lr=3e-3,
        warmup_ratio=0.05,
    )
    data.setup("fit")
    batch = collate(data.val_rows, module.tokenizer.pad_token_id)
    with torch.no_grad():
        loss_before = module(batch).item()
    trainer(3000, callbacks=[UntilGood()]).fit(module, datamodule=data)
    with torch.no_grad():
        loss_after = module(batch).item()
    print(
        f"\nval loss {loss_before:.3f} -> {loss_after:.4f}; input order {baseline}; checks {results}"
    )
    _, clean, scores = results[-1]
    assert (
        clean >= 0.95 and scores["nDCG@1"] >= 0.9 and scores["nDCG@10"] > baseline["nDCG@10"] + 0.2
    )


def test_from_student_takes_a_student_option_whole_and_the_optimiser_from_the_module(
    tiny_llama_causal,
):
    student = {
        "model": tiny_llama_causal,
        "lora": LORA,
        "pointwise_adapter": None,
        "dtype": "float32",
        "gradient_checkpointing": False,
    }
    module = ListwiseSFTModule.from_student(
        student,
        lr=3e-3,
        warmup_ratio=0.05,
        scheduler="constant",
        generation={"max_new_tokens": 16},
        rank_loss_weight=2.0,
    )
    assert {
        k: module.hparams[k]
        for k in ("model", "lr", "warmup_ratio", "dtype", "scheduler", "rank_loss_weight")
    } == {
        "model": tiny_llama_causal,
        "lr": 3e-3,
        "warmup_ratio": 0.05,
        "dtype": "float32",
        "scheduler": "constant",
        "rank_loss_weight": 2.0,
    }
    # the student's dtype unless set
    assert module.generation == {
        "dtype": "float32",
        "max_new_tokens": 16,
    }
    with pytest.raises(ConfigError, match=r"student: unknown field\(s\) \['lora_r'\]"):
        ListwiseSFTModule.from_student({**student, "lora_r": 8})
    with pytest.raises(
        ConfigError, match=r"unknown field\(s\) \['lr'\].*module\.lr"
    ):  # one place for lr
        ListwiseSFTModule.from_student({**student, "lr": 1e-4})


def test_both_stages_keep_the_learning_rate_in_module_only():
    from omegaconf import OmegaConf

    from dear.config import CONF_DIR

    for option in (CONF_DIR / "student").glob("*.yaml"):
        assert "lr" not in OmegaConf.load(option), option
    for name in ("train", "train_listwise"):
        assert "lr" in OmegaConf.load(CONF_DIR / f"{name}.yaml").module


def test_export_names_a_base_this_package_builds_as_configured(tmp_path):
    # `tiny:`, `pypi:` and `.gguf` names resolve to a directory of this machine's cache: the export names the
    # base as the config did, so it loads wherever it is moved (dear.models.loading.record_base).
    export = ListwiseSFTModule("tiny:llama-causal", LORA).export(tmp_path / "export")
    config = json.loads((export / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny:llama-causal"


def _reference_rank_loss(module, batch, prompt) -> float:
    """FIRST's loss from each id's answer log-probability, one full causal pass per id and row."""
    from dear.distill.losses import rank_weighted_ranknet

    losses = []
    for b, target in enumerate(batch["rank"]):
        real = batch["attention_mask"][b].bool()
        start = int((batch["labels"][b] != -100).float().argmax())
        prompt_ids = batch["input_ids"][b][real][:start].tolist()
        scores = []
        for i in range(len(target["tails"])):
            ids = module.tokenizer(prompt.ranking_line([i]), add_special_tokens=False)["input_ids"]
            logits = module.model(input_ids=torch.tensor([prompt_ids + ids])).logits[0].float()
            logprobs = logits.log_softmax(-1)
            scores.append(sum(logprobs[start + j - 1, t] for j, t in enumerate(ids)))
        losses.append(rank_weighted_ranknet(torch.stack(scores), torch.tensor(target["ranks"])))
    return float(torch.stack(losses).mean())


def test_rank_loss_is_firsts_ranknet_on_each_ids_answer_log_probability(tiny_llama_causal, compact):
    """Rows of different lengths (right padding), ids scored from the training pass's cache."""
    module = ListwiseSFTModule(tiny_llama_causal, LORA, rank_loss_weight=10.0).eval()
    with torch.no_grad():
        for name, p in module.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)  # a trained-looking adapter: the cache must carry it
    examples = synthetic_examples(compact, 3, 4, seed=1, reasoning=False)
    examples[1] = type(examples[1]).from_messages(
        [*examples[1].messages()[:-1], {"role": "user", "content": "longer " * 9}],
        examples[1].output,
    )
    rows = [tokenize_example(module.tokenizer, e, prompt=compact) for e in examples]
    batch = collate(rows, module.tokenizer.pad_token_id)
    assert len({len(r["input_ids"]) for r in rows}) > 1 and all(batch["rank"])
    with torch.no_grad():
        parts = module.losses(batch)
        reference = _reference_rank_loss(module, batch, compact)
    assert float(parts["rank"]) == pytest.approx(reference, rel=1e-4)
    assert float(parts["loss"]) == pytest.approx(float(parts["lm"]) + 10.0 * reference, rel=1e-4)
    module.hparams.rank_loss_weight = 0.0
    with torch.no_grad():
        assert float(module(batch)) == pytest.approx(float(parts["lm"]), rel=1e-5)
        # the parts asked for at weight 0 (dear.listwise.window_fit): the same ranking loss, none of it in `loss`
        scored = module.losses(batch, with_rank=True)
    assert float(scored["rank"]) == pytest.approx(reference, rel=1e-4)
    assert float(scored["loss"]) == pytest.approx(float(parts["lm"]), rel=1e-5)


def test_rank_loss_trains_the_adapter_through_the_cache(tiny_llama_causal, compact):
    module = ListwiseSFTModule(tiny_llama_causal, LORA, rank_loss_weight=1.0)
    with torch.no_grad():
        for name, p in module.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    rows = [
        tokenize_example(module.tokenizer, e, prompt=compact)
        for e in synthetic_examples(compact, 2, 3, reasoning=False)
    ]
    module.losses(collate(rows, module.tokenizer.pad_token_id))["rank"].backward()
    grads = {n: p.grad for n, p in module.model.named_parameters() if p.requires_grad}
    # every adapted layer's attention moves the ids' scores (the lm_head copy too)
    assert grads and all(
        g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_A" in n
    )


def test_rank_loss_without_targets_is_refused(tiny_llama_causal, compact):
    module = ListwiseSFTModule(tiny_llama_causal, LORA, rank_loss_weight=1.0)
    rows = [tokenize_example(module.tokenizer, e) for e in synthetic_examples(compact, 2, 3)]
    with pytest.raises(ValueError, match="no example of this batch has ranking targets"):
        module.losses(collate(rows, module.tokenizer.pad_token_id))
    with pytest.raises(ConfigError, match="rank_loss_weight must be >= 0"):
        ListwiseSFTModule(tiny_llama_causal, LORA, rank_loss_weight=-1.0)


def test_training_with_the_rank_loss_lowers_it_and_logs_its_parts(tiny_llama_causal, compact):
    """Fitted to 8 windows (the objective falls: gradients reach the ids' scores), its parts logged."""
    examples = synthetic_examples(compact, 8, 3, seed=0, reasoning=False)
    module = ListwiseSFTModule(
        tiny_llama_causal,
        LORA,
        lr=1e-2,
        warmup_ratio=0.0,
        scheduler="constant",
        rank_loss_weight=10.0,
    )
    data = ListwiseSFTDataModule(
        tiny_llama_causal, examples, val=examples, batch_size=8, prompt=compact
    )
    data.setup("fit")
    batch = collate(data.val_rows, module.tokenizer.pad_token_id)
    with torch.no_grad():
        before = module.eval().losses(batch)
    fit = trainer(30, limit_val_batches=1)
    fit.fit(module, datamodule=data)
    with torch.no_grad():
        after = module.eval().losses(batch)
    assert float(after["rank"]) < 0.75 * float(before["rank"])
    assert {"val/lm", "val/rank", "val/rank_top1", "train/rank"} <= set(fit.logged_metrics)
