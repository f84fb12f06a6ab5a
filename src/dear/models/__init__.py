"""The model layer every stage loads through: name resolution (hub, local, ``tiny:``, ``pypi:``, GGUF), dtype and
device, inference and training loaders, PEFT adapters, tiny test models, length-bucketed batching."""
