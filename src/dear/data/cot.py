"""DeAR-COT: the record format (the released set's LLaMA-Factory alpaca record) and reading the sets.

Fields ``system``, ``instruction``, ``input``, ``output``, ``history`` (``[[user, assistant], ...]``), ``think``; the
multi-turn DeAR prompt maps on exactly (passages = history, final turn = instruction, final-ranking line = output).
The SFT target is ``<think>…</think>`` + output. Sources: ``.jsonl``/``.json``/``.parquet``, a dataset folder, or a HF
dataset id (``abdoelsayed/DeAR-COT``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dear.errors import DataError, at, json_text, shown
from dear.utils.io import first_char, read_json, read_jsonl

FIELDS = ("system", "instruction", "input", "output", "history", "think")
THINK_TEMPLATE = "<think>\n{think}\n</think>\n\n"


@dataclass(frozen=True)
class CotExample:
    instruction: str
    output: str
    system: str = ""
    input: str = ""
    history: list[tuple[str, str]] = field(default_factory=list)
    think: str = ""
    # Not a DeAR-COT field (never written): the query a window was built for, so that a held-out split keeps all of
    # one query's windows on one side ("" : each example its own group).
    group: str = field(default="", compare=False)

    def messages(self) -> list[dict[str, str]]:
        """The prompt chat: system, the history turns, then instruction (+ input, LLaMA-Factory style)."""
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        for user, assistant in self.history:
            msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        content = f"{self.instruction}\n{self.input}" if self.input else self.instruction
        return msgs + [{"role": "user", "content": content}]

    def response(self, think_template: str = THINK_TEMPLATE) -> str:
        """The target: the reasoning in ``think_template`` (if any and not already in the output), then the output."""
        if self.think.strip() and "<think>" not in self.output.lower():
            return think_template.format(think=self.think.strip()) + self.output
        return self.output

    def record(self, **extra) -> dict:
        """The JSONL row: the six DeAR-COT fields, then any ``extra`` fields (e.g. ``meta``)."""
        row = {
            "system": self.system,
            "instruction": self.instruction,
            "input": self.input,
            "output": self.output,
            "history": [list(turn) for turn in self.history],
            "think": self.think,
        }
        return {**row, **extra}

    @classmethod
    def from_messages(
        cls, messages: list[dict[str, str]], output: str, think: str = "", group: str = ""
    ) -> CotExample:
        """A prompt chat (system?, alternating user/assistant turns, final user turn) + answer → example."""
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        turns = messages[1:] if system else messages
        if not turns or turns[-1]["role"] != "user" or len(turns) % 2 != 1:
            raise ValueError(
                "a prompt chat must alternate user/assistant turns and end with a user turn"
            )
        history = [
            (turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns) - 1, 2)
        ]
        return cls(
            instruction=turns[-1]["content"],
            output=output,
            system=system,
            history=history,
            think=think,
            group=group,
        )

    @classmethod
    def from_record(cls, row: dict, where: str) -> CotExample:
        """Validate one record; ``where`` (``file.jsonl:12``) names it in errors."""
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object with fields {list(FIELDS)}")
        for key in ("instruction", "output"):
            if not isinstance(row.get(key), str) or not row[key]:
                raise DataError(f"{where}: field {key!r} must be a non-empty string")
        texts = {
            key: json_text("" if row.get(key) is None else row[key], f"{where}: field {key!r}")
            for key in ("instruction", "output", "system", "input", "think")
        }
        history = [] if row.get("history") is None else row["history"]
        if not isinstance(history, list) or any(
            not isinstance(t, (list, tuple)) or len(t) != 2 for t in history
        ):
            raise DataError(
                f"{where}: field 'history' must be a list of [user, assistant] string pairs"
            )
        pairs = [
            tuple(json_text(x, f"{where}: field 'history'[{i}]") for x in t)
            for i, t in enumerate(history)
        ]
        return cls(history=pairs, **texts)


RELEASED = "abdoelsayed/DeAR-COT"


def load_cot(source: str, split: str = "train", limit: int | None = None) -> list[CotExample]:
    """Examples from ``source`` (see module doc), validated, at most ``limit``."""
    path = Path(source)
    if path.is_file() and path.suffix in (".jsonl", ".json"):
        rows = _jsonl_rows(path)
    elif path.is_file() and path.suffix == ".parquet":
        rows = _parquet_rows(path)
    elif path.is_file():
        raise DataError(f"{at(path)}: a DeAR-COT file must be .jsonl, .json or .parquet")
    else:
        rows = _hub_rows(source, split)
    examples = []
    for where, row in rows:
        examples.append(CotExample.from_record(row, where))
        if limit is not None and len(examples) >= limit:
            break
    if not examples:
        raise DataError(f"{source}: no DeAR-COT examples")
    return examples


def _jsonl_rows(path: Path):
    if first_char(path) == "[":  # one JSON list instead of lines
        yield from ((f"{at(path)}: entry [{i}]", r) for i, r in enumerate(read_json(path)))
        return
    yield from ((at(path, lineno), row) for lineno, row in read_jsonl(path))


def _parquet_rows(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{at(path)}: not a readable Parquet file ({shown(str(e))})") from None
    return ((f"{at(path)}: row {i}", r) for i, r in enumerate(table.to_pylist()))


def _hub_rows(source: str, split: str):
    import datasets

    try:
        ds = datasets.load_dataset(source, split=split)
    except Exception as e:  # noqa: BLE001 - re-raised with the source and what was tried
        raise DataError(
            f"{source}: not a local file, and loading it as a Hugging Face dataset (split {split!r}) "
            f"failed: {type(e).__name__}: {e}"
        ) from e
    return ((f"{source}[{split}] row {i}", row) for i, row in enumerate(ds))
