"""Synthetic chain-of-thought ranking data (DeAR-COT) from a chat endpoint (``python -m dear.cot``,
``conf/cot.yaml``); the record format is ``dear.data.cot``."""
