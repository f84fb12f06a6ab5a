"""Tiny randomly initialised models of real architectures, for tests and benchmarks offline.

The tokenizer is a byte-level BPE trained on the fly with the family's special tokens and pair template (Llama-3:
``<|begin_of_text|> A <|begin_of_text|> B``); weights are random, classes and shapes real.
"""

from __future__ import annotations

from pathlib import Path

from dear.utils.io import atomic_dir

CORPUS = [
    "query: what is a llama document: the llama is a domesticated south american camelid",
    "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat",
    "passages are ranked by their relevance to the search query using a language model",
    "Thomas Edison invented the light bulb in 1879 and founded General Electric",
    "Rank the passages based on their relevance: [1] > [2] > [3] ### Final Reranking",
    "You are RankLLM, an intelligent assistant that can rank passages by relevancy",
    '0123456789 numbers, punctuation; quotes "like these" and (parentheses) [brackets]',
]

LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def tiny_tokenizer(vocab_size: int = 512, corpus: list[str] | None = None):
    """A fast, Llama-3-shaped tokenizer: BOS/EOS/pad + header tokens, pair template, chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|pad|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
    ]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator((corpus or CORPUS) * 4, trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A",
        pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
        special_tokens=[("<|begin_of_text|>", bos)],
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        pad_token="<|pad|>",
        padding_side="right",
    )
    hf.chat_template = LLAMA3_CHAT_TEMPLATE
    return hf


def tiny_config(
    arch: str, vocab_size: int, tokenizer, hidden: int = 32, layers: int = 2, heads: int = 4
):
    from transformers import AutoConfig

    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    if arch == "bert":
        return AutoConfig.for_model("bert", **common, type_vocab_size=2)
    return AutoConfig.for_model(
        arch, **common, num_key_value_heads=heads // 2, head_dim=hidden // heads
    )


def build_tiny(
    out_dir: str | Path, arch: str = "llama", task: str = "seqcls", seed: int = 0, **sizes
) -> str:
    """Save a tiny random ``arch`` (llama, qwen2, qwen3, bert) ``seqcls`` or ``causal`` model + tokenizer → its dir."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file():
        return str(out_dir)
    tokenizer = tiny_tokenizer()
    config = tiny_config(arch, len(tokenizer), tokenizer, **sizes)
    if task == "seqcls":
        config.num_labels = 1
    auto = AutoModelForSequenceClassification if task == "seqcls" else AutoModelForCausalLM
    # A forked RNG: the caller's global RNG is the same whether the model was built or found.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto.from_config(config)

    # Built beside and renamed: a killed build never looks finished; another process's finished one is kept.
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return str(atomic_dir(out_dir, write, replace=False))


def build_tiny_on_tokenizer(
    out_dir: str | Path,
    tokenizer_dir: str | Path,
    arch: str = "llama",
    hidden: int = 64,
    layers: int = 2,
    seed: int = 0,
    pad_token_id: int | None = None,
) -> str:
    """A tiny one-logit classifier on a real tokenizer; ``pad_token_id`` unset as in DeAR's checkpoints."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file():
        return str(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    heads = 4
    config = AutoConfig.for_model(
        arch,
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads // 2,
        head_dim=hidden // heads,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        pad_token_id=pad_token_id,
        num_labels=1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return str(out_dir)
