"""Fuzzed input files (issue 21): every reader either loads exactly what an independent reference
reader gets, or raises a DataError whose one-line message names the file (and the line, for line
formats). Never another exception, never a different result.

The references below are written from the formats' documentation, not from our readers: TREC
files split at ASCII whitespace with numbers read as trec_eval reads them (C's ``atof``/``atol``:
the longest numeric prefix, so ``1_0`` is 1), rank_llm / DPR / FlagEmbedding / Tevatron /
DeAR-COT records with their documented types. Each case is a valid file mutated by a seeded
``random.Random``: a field replaced (``1_0``, ``١``, ``nan``, ``1e999``, ``""``, a list, null, a
10,000-character string …), a column or line deleted or repeated, non-UTF-8 bytes, a BOM, CRLF,
other separators, truncation.
"""

from __future__ import annotations

import ast
import codecs
import csv
import hashlib
import json
import math
import random
import re
from collections import defaultdict

import pytest

from dear.data.candidates import rankllm_json
from dear.data.cot import load_cot
from dear.data.qa import dpr_retrieval_json, read_qas
from dear.data.texts import load_queries, read_docs_tsv
from dear.data.trec import read_qrels, read_run
from dear.distill.sources import FlagEmbeddingSource, TevatronSource
from dear.errors import DataError

CASES = 40  # per reader: a few hundred in all, about a second


class Reject(Exception):
    """The reference finds no value in the file: our reader must raise a DataError."""


# --- reference readers -------------------------------------------------------------------------


def ref_lines(data: bytes) -> list[str]:
    """The documented line model: a BOM skipped, UTF-8, lines end at \\n (a \\r before it dropped)."""
    data = data[3:] if data.startswith(codecs.BOM_UTF8) else data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Reject from None
    lines = text.split("\n")
    return [line.rstrip("\r") for line in (lines[:-1] if lines[-1] == "" else lines)]


def blank(line: str) -> bool:
    return not line.strip(" \t\r\f\v")


def trec_fields(line: str) -> list[str]:
    """Fields as trec_eval splits them: at C's isspace (ASCII), which bytes.split() also uses."""
    return [f.decode("utf-8") for f in line.encode("utf-8").split()]


_C_NUMBER = re.compile(
    r"[+-]?(?:inf(?:inity)?|nan"  # strtod's grammar (C11 7.22.1.3), C locale
    r"|0x(?P<hex>[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?"
    r"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)",
    re.IGNORECASE,
)


def c_strtod(text: str) -> tuple[float, int]:
    """C's strtod in the C locale: (the value of the longest numeric prefix, its length); (0.0, 0) for none."""
    m = _C_NUMBER.match(text)
    if not m:
        return 0.0, 0
    number = m.group(0)
    if m.group("hex") is not None:
        sign, body = (-1.0 if number[0] == "-" else 1.0), number.lstrip("+-")
        return sign * float.fromhex(body if "p" in body.lower() else body + "p0"), len(number)
    return float(number), len(number)


def c_atol(text: str) -> int:
    m = re.match(r"[+-]?[0-9]+", text)
    return int(m.group(0)) if m else 0


def ref_run(data: bytes):
    rows: dict[str, dict[str, tuple[float, int]]] = defaultdict(dict)
    for line in ref_lines(data):
        fields = trec_fields(line)
        if not fields:
            continue
        if len(fields) != 6 or fields[2] in rows[fields[0]]:
            raise Reject
        qid, _, docid, rank, score, _ = fields
        rows[qid][docid] = (c_strtod(score)[0], c_atol(rank))
    if not rows:
        raise Reject
    # best first: score descending, then the rank column (our documented tie order), then docid
    return {
        q: [(d, s) for d, (s, _) in sorted(docs.items(), key=lambda x: (-x[1][0], x[1][1], x[0]))]
        for q, docs in rows.items()
    }


def ref_qrels(data: bytes):
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for line in ref_lines(data):
        fields = trec_fields(line)
        if not fields:
            continue
        if len(fields) != 4:
            raise Reject
        qid, _, docid, grade = fields
        if qrels[qid].setdefault(docid, c_atol(grade)) != c_atol(grade):
            raise Reject  # two grades for one pair
    if not qrels:
        raise Reject
    return dict(qrels)


def ref_queries(data: bytes):
    queries = {}
    for line in ref_lines(data):
        if blank(line):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or parts[0] in queries:
            raise Reject
        queries[parts[0]] = parts[1]
    if not queries:
        raise Reject
    return queries


def ref_docs(data: bytes):
    docs = {}
    for line in ref_lines(data):
        if line == "":
            continue
        if "\t" not in line:
            raise Reject
        docid, text = line.split("\t", 1)
        if docid in docs:
            raise Reject
        docs[docid] = ("", text)
    if not docs:
        raise Reject
    return docs


def ref_qas(data: bytes):
    queries, answers = {}, {}
    try:
        rows = list(csv.reader([line + "\n" for line in ref_lines(data)], delimiter="\t"))
    except csv.Error:
        raise Reject from None
    for i, row in enumerate(rows):
        if len(row) != 2:
            raise Reject
        try:
            parsed = ast.literal_eval(row[1])
        except Exception:  # noqa: BLE001 - whatever Python makes of it, it is no list of answers
            raise Reject from None
        queries[str(i)], answers[str(i)] = row[0], texts(parsed)
    return queries, answers


def ref_json(data: bytes):
    text = "\n".join(ref_lines(data))
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise Reject from None


def ref_jsonl(data: bytes) -> list:
    rows = []
    for line in ref_lines(data):
        if not blank(line):
            try:
                rows.append(json.loads(line))
            except (ValueError, RecursionError):
                raise Reject from None
    return rows


def text(value) -> str:
    if type(value) is not str:
        raise Reject
    try:
        value.encode("utf-8")  # no lone surrogates (JSON's "\\ud800")
    except UnicodeEncodeError:
        raise Reject from None
    return value


def texts(value) -> list[str]:
    if type(value) is not list:
        raise Reject
    return [text(v) for v in value]


def ident(value) -> str:
    """Ids are strings, or integers as their decimal text."""
    if type(value) is int:
        return str(value)
    return text(value)


def score(value) -> float:
    """A finite number, or a string that is one whole (strtod consumes all of it)."""
    if type(value) in (int, float):
        try:
            number = float(value)
        except OverflowError:
            raise Reject from None
    elif type(value) is str:
        number, used = c_strtod(value)
        if used == 0 or used != len(value):
            raise Reject
    else:
        raise Reject
    if not math.isfinite(number):
        raise Reject
    return number


def obj(value, *keys) -> dict:
    if type(value) is not dict or any(k not in value for k in keys):
        raise Reject
    return value


def ref_rankllm(data: bytes):
    entries = ref_json(data)
    if type(entries) is not list:
        raise Reject
    run = {}
    for entry in entries:
        obj(entry, "query", "hits")
        if type(entry["hits"]) is not list or not entry["hits"]:
            raise Reject
        hits = [
            (ident(h["qid"]), ident(h["docid"]), text(h["content"]), score(h.get("score", 0.0)))
            for h in (obj(h, "qid", "docid", "content") for h in entry["hits"])
        ]
        qids, docids = {h[0] for h in hits}, [h[1] for h in hits]
        if len(qids) != 1 or len(set(docids)) != len(docids) or hits[0][0] in run:
            raise Reject
        run[hits[0][0]] = (text(entry["query"]), [h[1:] for h in hits])
    return run


def ref_dpr(data: bytes):
    entries = ref_json(data)
    if type(entries) is not list:
        raise Reject
    run, answers = {}, {}
    for i, entry in enumerate(entries):
        obj(entry, "question", "answers", "ctxs")
        if type(entry["ctxs"]) is not list or not entry["ctxs"]:
            raise Reject
        run[str(i)] = (
            text(entry["question"]),
            [
                (
                    ident(c["id"]),
                    text(c.get("text", "")),
                    text(c.get("title", "")),
                    score(c.get("score", 0.0)),
                )
                for c in (obj(c, "id") for c in entry["ctxs"])
            ],
        )
        answers[str(i)] = texts(entry["answers"])
    return run, answers


def sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def ref_flag(data: bytes):
    queries = []
    for row in ref_jsonl(data):
        query = text(obj(row, "query", "pos", "neg")["query"])
        pos, neg = ([("", t) for t in texts(row[k])] for k in ("pos", "neg"))
        if pos and neg:
            queries.append((sha(query), query, pos, neg))
    if not queries:
        raise Reject
    return queries


def ref_tevatron(data: bytes):
    queries = []
    for row in ref_jsonl(data):
        query = text(obj(row, "query", "positive_passages", "negative_passages")["query"])
        qid = sha(query) if row.get("query_id") is None else ident(row["query_id"])
        pos, neg = (
            [passage(p) for p in list_of(row[k])]
            for k in ("positive_passages", "negative_passages")
        )
        if pos and neg:
            queries.append((qid, query, pos, neg))
    if not queries:
        raise Reject
    return queries


def list_of(value) -> list:
    if type(value) is not list:
        raise Reject
    return value


def passage(p) -> tuple[str, str]:
    obj(p, "text")
    if "docid" in p:
        ident(p["docid"])
    return text(p.get("title", "")), text(p["text"])


def ref_cot(data: bytes):
    lines = ref_lines(data)
    if "".join(lines).lstrip(" \t\r\f\v")[:1] == "[":  # a JSON list, not lines
        rows = ref_json(data)
    else:
        rows = ref_jsonl(data)
    examples = []
    for row in rows:
        obj(row, "instruction", "output")
        if not text(row["instruction"]) or not text(row["output"]):
            raise Reject
        optional = {
            k: "" if row.get(k) is None else text(row[k]) for k in ("system", "input", "think")
        }
        history = [] if row.get("history") is None else list_of(row["history"])
        if any(type(t) is not list or len(t) != 2 for t in history):
            raise Reject
        pairs = [tuple(texts(t)) for t in history]
        examples.append(
            (
                row["instruction"],
                row["output"],
                optional["system"],
                optional["input"],
                pairs,
                optional["think"],
            )
        )
    if not examples:
        raise Reject
    return examples


# --- our readers, their results in the references' shape ---------------------------------------


def run_of(run) -> dict:
    return {
        q: (r.query.text, [(c.docid, c.text, c.score) for c in r.candidates])
        for q, r in run.items()
    }


def dpr_of(result) -> tuple:
    run, answers = result
    run = {
        q: (r.query.text, [(c.docid, c.text, c.title, c.score) for c in r.candidates])
        for q, r in run.items()
    }
    return run, answers


def train_of(source) -> list:
    queries, docs = source.load()
    texts = docs.get_many({d for q in queries for d in q.docids})
    return [
        (q.qid, q.text, [texts[d] for d in q.positives], [texts[d] for d in q.negatives])
        for q in queries
    ]


def cot_of(examples) -> list:
    return [(e.instruction, e.output, e.system, e.input, e.history, e.think) for e in examples]


# --- valid files and their mutations -----------------------------------------------------------

BAD = [
    "1_0",
    "2_0",
    "\u0661",
    "\uff11",
    "nan",
    "inf",
    "-Infinity",
    "1e999",
    "",
    "[1]",
    '{"a": 1}',
    "null",
    "true",
    "x" * 10_000,
    "0x1p3",
    "1e5",
    "-0",
    "+2",
    ".5",
    "7.",
    "99999999999999999999",
    "1e",
    "5\u00a0",
    "d1",
    "3",
]
RAW = "@@raw@@"  # a JSON string that becomes the raw token after it: numbers json.dumps would not write
# and some that fit
BAD_JSON = [
    "1_0",
    "\u0661",
    "nan",
    " 5",
    "12",
    "1e999",
    "",
    "x" * 10_000,
    [],
    ["x"],
    [1],
    {},
    {"a": 1},
    None,
    True,
    False,
    0,
    7,
    -1,
    1.5,
    float("nan"),
    float("inf"),
    10**30,
    RAW + "1e999",
    RAW + "9" * 5000,
    [[["x"]]],
    "other",
    42,
    2.5,
    "3.0",
    "-1e2",
    "\u00e9t\u00e9 \U0001f600",
    "a\ud800b",
]
# (and a NUL, a BOM mid-file)
NOT_UTF8 = [
    b"\xff",
    b"\xe9",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\x00",
    b"\xef\xbb\xbf",
]
SEPARATORS = ["\t", " ", "  ", "\u00a0", "\x0b", "\x1f", "\u3000", "\r"]


def line_mutation(rng: random.Random, lines: list[str], sep: str) -> list[str]:
    """One change to the lines of a line format whose fields are ``sep``-separated."""
    lines = list(lines)
    i = rng.randrange(len(lines)) if lines else 0
    fields = lines[i].split(sep) if lines else [""]
    j = rng.randrange(len(fields))
    op = rng.randrange(9)
    if op == 0:
        fields[j] = rng.choice(BAD)
    elif op == 1:
        del fields[j]
    elif op == 2:
        fields.insert(j, fields[j])
    elif op == 3:
        fields = [sep.join(fields).replace(sep, rng.choice(SEPARATORS), rng.randint(1, 3))]
    elif op == 4:  # the line again, maybe with another last field (a conflict, a repeated id)
        return (
            lines[:i]
            + [sep.join(fields[:-1] + [rng.choice([fields[-1], rng.choice(BAD)])])]
            + lines[i:]
        )
    elif op == 5:
        return lines[:i] + lines[i + 1 :]
    elif op == 6:
        return lines[:i] + [rng.choice(["", " ", "\t", "\f", "\u00a0"])] + lines[i:]
    elif op == 7:
        return [rng.choice(['{"query": "q", "hits": []}', '[{"qid": "q1"}]', "[", "{"])] + lines[
            rng.randrange(2) :
        ]
    else:
        fields[j] = fields[j] + rng.choice(BAD)
    if lines:
        lines[i] = sep.join(fields)
    return lines


def byte_mutation(rng: random.Random, data: bytes) -> bytes:
    op = rng.randrange(7)
    at = rng.randrange(len(data) + 1)
    if op == 0:
        return codecs.BOM_UTF8 + data
    if op == 1:
        return data.replace(b"\n", b"\r\n")
    if op == 2:
        return data[:at] + rng.choice(NOT_UTF8) + data[at:]
    if op == 3:
        return data[:at]
    if op == 4:
        return data.rstrip(b"\n")
    if op == 5:
        return data.replace(b"\n", b"\r", 1)
    return b"" if rng.random() < 0.3 else data[at:]


def line_case(rng: random.Random, lines: list[str], sep: str) -> bytes:
    for _ in range(rng.randint(1, 2)):
        lines = line_mutation(rng, lines, sep)
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    return byte_mutation(rng, data) if rng.random() < 0.3 else data


def json_mutation(rng: random.Random, value):
    """One change somewhere in a JSON value (a copy): a node replaced, a key deleted, an item repeated."""
    value = json.loads(json.dumps(value))
    slots = list(_slots(value))
    leaves = [(parent, key) for parent, key in slots if not isinstance(parent[key], (dict, list))]
    parent, key = rng.choice(leaves if leaves and rng.random() < 0.6 else slots)
    op = rng.randrange(5)
    if op == 0 or op == 1:
        parent[key] = rng.choice(BAD_JSON)
    elif op == 2 and isinstance(parent, dict):
        del parent[key]
    elif op == 3 and isinstance(parent, list):
        parent.insert(key, json.loads(json.dumps(parent[key])))
    elif isinstance(parent[key], list) and parent[key]:
        parent[key] = rng.choice([parent[key][0], []])  # a bare item for a list, or none
    else:
        parent[key] = [parent[key]]
    return value


def _slots(value):
    """(container, key) for every node under ``value``."""
    children = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in children:
        yield value, key
        yield from _slots(child)


def dumps(value, ascii: bool = True) -> str:
    return re.sub(f'"{RAW}([^"]*)"', r"\1", json.dumps(value, ensure_ascii=ascii))


def json_case(rng: random.Random, valid) -> bytes:
    value = valid
    for _ in range(rng.randint(1, 2)):
        value = json_mutation(rng, value)
    raw = dumps(value, rng.random() < 0.5) if rng.random() < 0.9 else "[" * 50_000 + "]" * 50_000
    data = raw.encode("utf-8", "surrogatepass")  # a lone surrogate unescaped is no UTF-8
    return byte_mutation(rng, data) if rng.random() < 0.3 else data


def jsonl_case(rng: random.Random, valid: list) -> bytes:
    rows = [dumps(r) for r in valid]
    i = rng.randrange(len(rows))
    if rng.random() < 0.7:  # a field of one record
        rows[i] = dumps(json_mutation(rng, valid[i]))
        data = "".join(r + "\n" for r in rows).encode()
        return byte_mutation(rng, data) if rng.random() < 0.3 else data
    # lines deleted, repeated …, or the JSON text cut at its commas
    return line_case(rng, rows, ", ")


def case(rng: random.Random | None, valid, kind: str) -> bytes:
    """The ``valid`` file (``rng`` None) or a mutation of it; ``kind``: "json", "jsonl" or a line
    format's field separator."""
    if kind == "json":
        return json_case(rng, valid) if rng else json.dumps(valid).encode()
    if kind == "jsonl":
        return (
            jsonl_case(rng, valid) if rng else "".join(json.dumps(r) + "\n" for r in valid).encode()
        )
    return line_case(rng, valid.split("\n")[:-1], kind) if rng else valid.encode()


RUN = "q1 Q0 d1 1 3.25 bm25\nq1 Q0 d2 2 2.5 bm25\nq1 Q0 d3 3 -1e-3 bm25\nq2 Q0 d2 1 17 bm25\nq2 Q0 d4 2 .5 bm25\n"
QRELS = "q1 0 d1 2\nq1 0 d2 0\nq2 0 d4 1\nq2 0 d2 3\n"
QUERIES = 'q1\twhat is a llama\nq2\twho invented the light bulb\n1037\tsome "quoted" query\n'
DOCS = "d1\tthe llama\nd2\ta text\twith a tab\nd3\tcoffee is a drink\n"
QAS = "who made bulbs\t['Edison', \"T. Edison\"]\nwhat is a llama\t['a camelid']\n"
RANKLLM = [
    {
        "query": "what is a llama",
        "hits": [
            {"content": "the llama", "qid": 1, "docid": "d1", "rank": 1, "score": 3.5},
            {"content": "a text", "qid": 1, "docid": 2, "rank": 2, "score": "1.25"},
        ],
    },
    {"query": "bulbs", "hits": [{"content": "edison", "qid": "q2", "docid": "d3", "score": -2}]},
]
DPR = [
    {
        "question": "who made bulbs",
        "answers": ["Edison"],
        "ctxs": [
            {"id": "7", "title": "Edison", "text": "he did", "score": "80.5"},
            {"id": 8, "text": "no", "score": 1},
        ],
    },
    {
        "question": "llama?",
        "answers": ["camelid", "animal"],
        "ctxs": [{"id": "9", "title": "", "text": "a camelid"}],
    },
]
FLAG = [
    {
        "query": f"about {t}",
        "pos": [f"a passage about {t}"],
        "neg": [f"not {t}", "other"],
        "pos_scores": [1.0],
    }
    for t in ("llama", "edison", "coffee")
]
TEVATRON = [
    {
        "query_id": q,
        "query": f"about {t}",
        "positive_passages": [{"docid": "p", "title": t, "text": f"on {t}"}],
        "negative_passages": [{"text": "other"}, {"docid": 3, "title": "", "text": "more"}],
    }
    for q, t in ((1, "llama"), ("2", "edison"), (None, "coffee"))
]
COT = [
    {
        "system": "s",
        "instruction": f"rank {i}",
        "input": "",
        "output": "[1] > [2]",
        "history": [["passage [1]", "ok"]],
        "think": "because",
    }
    for i in range(3)
]

READERS = {  # name: (file name, valid content, its kind (see ``case``), our reader, the reference)
    "trec run": ("run.trec", RUN, " ", read_run, ref_run),
    "qrels": ("qrels.txt", QRELS, " ", read_qrels, ref_qrels),
    "queries tsv": ("queries.tsv", QUERIES, "\t", lambda p: load_queries(str(p)), ref_queries),
    "docs tsv": ("docs.tsv", DOCS, "\t", read_docs_tsv, ref_docs),
    "qa.csv": ("nq.qa.csv", QAS, "\t", lambda p: read_qas(str(p)), ref_qas),
    "rank_llm json": (
        "rankllm.json",
        RANKLLM,
        "json",
        lambda p: run_of(rankllm_json(str(p), 100)),
        ref_rankllm,
    ),
    "dpr json": (
        "dpr.json",
        DPR,
        "json",
        lambda p: dpr_of(dpr_retrieval_json(str(p), 100)),
        ref_dpr,
    ),
    "flagembedding jsonl": (
        "flag.jsonl",
        FLAG,
        "jsonl",
        lambda p: train_of(FlagEmbeddingSource(str(p))),
        ref_flag,
    ),
    "tevatron jsonl": (
        "tev.jsonl",
        TEVATRON,
        "jsonl",
        lambda p: train_of(TevatronSource(str(p))),
        ref_tevatron,
    ),
    "dear-cot jsonl": ("cot.jsonl", COT, "jsonl", lambda p: cot_of(load_cot(str(p))), ref_cot),
}
# A file-level message has no line to name.
FILE_LEVEL = re.compile(
    r": (the run file is empty|the qrels file is empty|no queries|no documents|no query with both"
    r"|no DeAR-COT examples|invalid JSON|JSON nested too deeply)"
)


@pytest.mark.parametrize("name", list(READERS))
def test_a_reader_loads_what_the_reference_reads_or_names_the_place(tmp_path, name):
    filename, valid, kind, read, reference = READERS[name]
    rng, path, outcomes = random.Random(f"issue-21 {name}"), tmp_path / filename, []
    for i in range(CASES + 1):
        data = case(rng if i else None, valid, kind)  # case 0: the valid file
        path.write_bytes(data)
        try:
            expected = reference(data)
        except Reject:
            expected = Reject
        try:
            got = read(path)
        except DataError as e:
            message = str(e)
            assert (
                "\n" not in message and str(path) in message and len(message) < len(str(path)) + 400
            ), (i, message)
            if kind != "json":  # a line format names the line
                assert re.search(rf"{re.escape(str(path))}:\d+\b", message) or FILE_LEVEL.search(
                    message
                ), (i, message)
            assert i or expected is Reject, f"the valid file is refused: {message}"
            outcomes.append("error")
            continue
        assert expected is not Reject and got == expected, (i, data[:300])
        outcomes.append("loaded")
    # both kinds of case exercised
    assert outcomes[0] == "loaded" and {"loaded", "error"} <= set(outcomes[1:])
