"""The model layer every stage loads through: names → paths (hub ids, local dirs, ``tiny:``,
``pypi:``, GGUF files dequantized once), dtype/device (bf16 autocast where native), inference
and training loaders, PEFT adapters (LoRA, QLoRA), tiny random test models, and length-bucketed
batching."""
