"""Synthetic chain-of-thought ranking data (DeAR-COT): generation from a chat endpoint
(``python -m dear.cot``, config ``conf/cot.yaml``). The record format and its loader are
``dear.data.cot``."""
