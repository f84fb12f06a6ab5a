"""A Stage-1 fixture: 6 queries whose positives share the query's topic word, a teacher that prefers
one negative, and the data module + LightningModule built over them."""

from __future__ import annotations

import numpy as np

from dear.data.texts import DocStore
from dear.distill.data import DistillDataModule
from dear.distill.losses import DistillLoss
from dear.distill.module import DistillModule
from dear.distill.sources import TrainQuery
from dear.distill.teacher import Teacher

N_QUERIES, POOL = 6, 7
TEACHER_PREFERS = 3  # the teacher's favourite document in every pool (a negative)


class FixtureSource:
    """6 queries; each positive shares the query's topic word, negatives are other topics."""

    def load(self):
        topics = ["llama", "edison", "coffee", "volcano", "violin", "glacier"]
        docs = {
            f"d{i}_{j}": ("", f"a passage about {topics[(i + j) % N_QUERIES]} number {j}")
            for i in range(N_QUERIES)
            for j in range(POOL + 1)
        }
        queries = [
            TrainQuery(
                f"q{i}",
                f"tell me about {topics[i]}",
                (f"d{i}_0",),
                tuple(f"d{i}_{j}" for j in range(1, POOL + 1)),
            )
            for i in range(N_QUERIES)
        ]
        return queries, DocStore("fixture", docs)

    def describe(self):
        return {"fixture": N_QUERIES}


class FixtureTeacher:
    """Scores document j of every pool as -|j - TEACHER_PREFERS|: it prefers one negative."""

    def __init__(self, sign: float = 1.0, **_):
        self.sign = sign

    def score(self, rankings, desc=""):
        return [
            np.array(
                [
                    -self.sign * abs(int(c.docid.split("_")[1]) - TEACHER_PREFERS)
                    for c in r.candidates
                ]
            )
            for r in rankings
        ]


def make(student_dir, tmp_path, alpha, sign=1.0, lr=1e-2, rank="pointce"):
    student = {
        "model": student_dir,
        "lora": None,
        "pooling": "auto",
        "dtype": "float32",
        "template": {"query_max_len": 16, "doc_max_len": 24},
    }
    teacher = Teacher(
        {"_target_": "tests.helpers.distill.FixtureTeacher", "model": "fixture", "sign": sign},
        lambda **kw: FixtureTeacher(sign, **kw),
    )
    dm = DistillDataModule(
        FixtureSource(),
        student,
        teacher if alpha > 0 else None,
        group_size=POOL + 1,
        batch_size=3,
        cache_dir=str(tmp_path / "teacher"),
        seed=0,
    )
    module = DistillModule(
        student, DistillLoss(rank, alpha=alpha, tau=1.0), lr=lr, warmup_ratio=0.0
    )
    return dm, module
