"""Stage 2 (DeAR-L): listwise prompts, robust ranking parsing, the sliding-window reranker, its
generation back ends, and listwise SFT (LightningModule + LightningDataModule)."""
