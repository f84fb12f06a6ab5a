"""DeAR-COT examples: the LLaMA-Factory alpaca record the released set uses, and its chat.

A record has ``system``, ``instruction``, ``input``, ``output``, ``history`` (``[[user,
assistant], ...]`` turns before the instruction) and ``think`` (the reasoning). The multi-turn
DeAR prompt maps onto it exactly: the passage exchange is the history, the final user turn the
instruction, the final-ranking line the output. The SFT target is ``<think>…</think>`` + output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dear.errors import DataError

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

    def messages(self) -> list[dict[str, str]]:
        """The prompt chat: system, the history turns, then instruction (+ input, LLaMA-Factory style)."""
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        for user, assistant in self.history:
            msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        content = f"{self.instruction}\n{self.input}" if self.input else self.instruction
        return msgs + [{"role": "user", "content": content}]

    def response(self, think_template: str = THINK_TEMPLATE) -> str:
        """The assistant's target: the reasoning in ``think_template`` (when there is any and the
        output does not already carry it), then the output."""
        if self.think.strip() and "<think>" not in self.output.lower():
            return think_template.format(think=self.think.strip()) + self.output
        return self.output

    def record(self, **extra) -> dict:
        """The JSONL row: the six DeAR-COT fields, then any ``extra`` fields (e.g. ``meta``)."""
        row = {"system": self.system, "instruction": self.instruction, "input": self.input, "output": self.output,
               "history": [list(turn) for turn in self.history], "think": self.think}
        return {**row, **extra}

    @classmethod
    def from_messages(cls, messages: list[dict[str, str]], output: str, think: str = "") -> CotExample:
        """A prompt chat (system?, alternating user/assistant turns, final user turn) + answer → example."""
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        turns = messages[1:] if system else messages
        if not turns or turns[-1]["role"] != "user" or len(turns) % 2 != 1:
            raise ValueError("a prompt chat must alternate user/assistant turns and end with a user turn")
        history = [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns) - 1, 2)]
        return cls(instruction=turns[-1]["content"], output=output, system=system, history=history, think=think)

    @classmethod
    def from_record(cls, row: dict, where: str) -> CotExample:
        """Validate one record; ``where`` (``file.jsonl:12``) names it in errors."""
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object with fields {list(FIELDS)}")
        for key in ("instruction", "output"):
            if not isinstance(row.get(key), str) or not row[key]:
                raise DataError(f"{where}: field {key!r} must be a non-empty string")
        for key in ("system", "input", "think"):
            if not isinstance(row.get(key) or "", str):
                raise DataError(f"{where}: field {key!r} must be a string")
        history = row.get("history") or []
        if not isinstance(history, list) or any(not isinstance(t, (list, tuple)) or len(t) != 2
                                                or not all(isinstance(x, str) for x in t) for t in history):
            raise DataError(f"{where}: field 'history' must be a list of [user, assistant] string pairs")
        return cls(instruction=row["instruction"], output=row["output"], system=row.get("system") or "",
                   input=row.get("input") or "", history=[tuple(t) for t in history], think=row.get("think") or "")
