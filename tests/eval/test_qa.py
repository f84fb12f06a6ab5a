"""DPR answer matching and Top-k accuracy."""

from __future__ import annotations

import json

from dear.data.contract import Candidate, Query, Ranking
from dear.data.qa import dpr_retrieval_json, read_qas
from dear.eval.answers import has_answer
from dear.eval.judges import AnswerJudge


def test_has_answer_is_token_level_and_normalised():
    assert has_answer(["Thomas Edison"], "It was thomas  EDISON, in 1879.")
    assert has_answer(["Café"], "the cafe\u0301 opened")  # NFD: é and e + combining accent agree
    assert not has_answer(["Edison"], "Edisonian ideas")  # whole tokens only
    assert has_answer(["1,879"], "in 1,879 cases")
    assert not has_answer([""], "anything")


def test_top_k_accuracy():
    ranking = Ranking(
        Query("0", "who"), [Candidate("a", "nothing here"), Candidate("b", "edison did")]
    )
    judge = AnswerJudge({"0": ["Edison"]}, [1, 2])
    aggregate, per_query = judge.evaluate({"0": ranking})
    assert aggregate == {"Top-1": 0.0, "Top-2": 1.0}


def test_dpr_files(tmp_path):
    (tmp_path / "qa.csv").write_text('who made bulbs\t["Edison", "T. Edison"]\n')
    queries, answers = read_qas(str(tmp_path / "qa.csv"))
    assert queries == {"0": "who made bulbs"} and answers == {"0": ["Edison", "T. Edison"]}
    (tmp_path / "r.json").write_text(
        json.dumps(
            [
                {
                    "question": "q",
                    "answers": ["x"],
                    "ctxs": [{"id": "7", "title": "T", "text": "x y", "score": 1.5}],
                }
            ]
        )
    )
    run, ans = dpr_retrieval_json(str(tmp_path / "r.json"), 100)
    assert run["0"].candidates[0] == Candidate("7", "x y", "T", 1.5) and ans == {"0": ["x"]}
