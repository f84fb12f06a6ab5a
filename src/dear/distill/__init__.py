"""Stage 1 (DeAR-P): teacher-logit cache, training groups, losses and the student module."""
