"""Permutation-constrained decoding (``listwise.constrained=true``): the model can only write the ranking line its
prompt asks for, every id of the window exactly once.

A small listwise model repeats ids and leaves others out, and the parser's repair appends the missing ones last,
demoting passages for no reason the model gave (docs/stage2_real_llm.md). Here the answer is generated under a
grammar: ``{marker} `` (when the prompt has one), then ``[i] > [j] > … `` over the window's ids, each once, then an
end token. At every step the tokens whose text would leave the grammar are masked out, so the model's own
preference decides among the ids still unused and every answer parses ``clean``.

"No id twice" is not a regular language of manageable size (a regex for it lists the permutations), so this is a
hand-written state machine over the answer's text, not a regex-guided decoder (vLLM's, outlines'); a token's text is
read from the tokenizer once (``token_texts``), so a token may carry several characters (``" >"``, ``"12"``) and the
model keeps its own tokenization. What it removes: any reasoning before the ranking (a model trained to think first
is made to answer at once) and any text after it.

Greedy decoding under the grammar still picks an id a token at a time: where ids are written digit by digit, after
``[8] > [`` the digit ``1`` carries the probability of every id it starts (``[1]``, ``[10]``–``[19]``) and ``9`` of
one, so a model that would copy ``[9]`` next writes ``[10]``. Beam search (``backend.num_beams``) compares whole ids:
the processor reads each row's state from its own tokens, so beams may be reordered between steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

HEAD, OPEN, NUMBER, SEP, DONE = range(5)
SEPARATOR = " > "
ID_CHARS = frozenset("[]> 0123456789")
# Before the answer's first character: up to LEAD spaces or newlines (a SentencePiece model's first token is "▁###").
LEAD, LEAD_CHARS = 2, frozenset(" \n")


@dataclass(frozen=True)
class State:
    """Where an answer is: ``phase`` (HEAD: ``pos`` characters of the head written; OPEN: ``[`` next; NUMBER:
    ``digits`` of an id so far; SEP: ``pos`` characters of the separator; DONE: every id written), ``unused`` ids,
    ``lead``: leading whitespace written (None once the answer has begun)."""

    phase: int
    pos: int = 0
    digits: str = ""
    unused: frozenset[str] = frozenset()
    lead: int | None = 0


class PermutationGrammar:
    """Answers naming each of ``n`` ids (from ``first_id``) once: ``{marker} [i] > [j] > …``."""

    def __init__(self, n: int, first_id: int = 1, marker: str | None = None):
        if n < 1:
            raise ValueError(f"a window needs at least one passage, got {n}")
        self.n, self.first_id, self.marker = n, first_id, marker
        self.head = f"{marker} " if marker else ""
        self.ids = frozenset(str(first_id + i) for i in range(n))
        self.alphabet = ID_CHARS | frozenset(self.head) | LEAD_CHARS

    def start(self) -> State:
        return State(HEAD if self.head else OPEN, unused=self.ids)

    def complete(self, state: State) -> bool:
        return state.phase == DONE

    def advance(self, state: State, text: str) -> State | None:
        """The state after writing ``text``; None when no allowed answer starts that way."""
        phase, pos, digits, unused, lead = (
            state.phase,
            state.pos,
            state.digits,
            state.unused,
            state.lead,
        )
        for ch in text:
            if lead is not None:
                if ch in LEAD_CHARS:
                    if lead == LEAD:
                        return None
                    lead += 1
                    continue
                lead = None
            if phase == HEAD:
                if ch != self.head[pos]:
                    return None
                pos += 1
                if pos == len(self.head):
                    phase, pos = OPEN, 0
            elif phase == OPEN:
                if ch != "[":
                    return None
                phase, digits = NUMBER, ""
            elif phase == NUMBER:
                if ch == "]":
                    if digits not in unused:
                        return None
                    unused = unused - {digits}
                    phase, pos = (SEP, 0) if unused else (DONE, 0)
                elif "0" <= ch <= "9" and any(u.startswith(digits + ch) for u in unused):
                    digits += ch
                else:
                    return None
            elif phase == SEP:
                if ch != SEPARATOR[pos]:
                    return None
                pos += 1
                if pos == len(SEPARATOR):
                    phase, pos = OPEN, 0
            else:  # DONE: nothing but the end
                return None
        return State(phase, pos, digits, unused, lead)


def token_texts(tokenizer) -> list[str]:
    """Each token id's text as it reads *inside* a text (a SentencePiece ``▁x`` is `` x`` there, though decoding it
    alone drops the space): decoded after a fixed anchor token, the anchor's own text removed."""
    anchor = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("a"))[-1]
    alone = tokenizer.decode([anchor], clean_up_tokenization_spaces=False)
    size = len(tokenizer)
    pairs = tokenizer.batch_decode(
        [[anchor, i] for i in range(size)], clean_up_tokenization_spaces=False
    )
    special = set(tokenizer.all_special_ids)
    return [
        "" if i in special or not p.startswith(alone) else p[len(alone) :]
        for i, p in enumerate(pairs)
    ]


class PermutationLogitsProcessor:
    """A transformers logits processor for one batch: the rows of chat ``b`` (one, or ``num_beams`` consecutive
    ones in beam search) follow ``grammars[b]`` (None: free) from position ``start`` (the padded prompt width);
    ``texts``: ``token_texts`` of the tokenizer; ``stop``: end token ids, the only tokens allowed once every id is
    written. A row's state is read from its own tokens (memoised by prefix), so beams may be reordered between
    steps. A row that has ended (a stop token) is left alone; a row with no allowed token (a tokenizer without some
    character) may only end, and the parser repairs it."""

    def __init__(self, grammars: list, texts: list[str], stop: list[int], start: int):
        self.grammars, self.texts, self.stop, self.start = grammars, texts, list(stop), start
        # (chat, tokens so far) → its state; None: ended or free
        self._states: dict[tuple[int, tuple[int, ...]], State | None] = {}
        self._allowed: dict[tuple[int, State], list[int]] = {}
        # Per alphabet, the tokens that could be written at all (nonempty text within its characters).
        self._candidates: dict[frozenset, list[tuple[int, str]]] = {}

    def candidates(self, alphabet: frozenset) -> list[tuple[int, str]]:
        if alphabet not in self._candidates:
            self._candidates[alphabet] = [
                (i, t) for i, t in enumerate(self.texts) if t and set(t) <= alphabet
            ]
        return self._candidates[alphabet]

    def state(self, chat: int, tokens: tuple[int, ...]) -> State | None:
        """The state of chat ``chat``'s answer after ``tokens`` (None: free, ended, or off the grammar)."""
        known = len(tokens)
        while known > 0 and (chat, tokens[:known]) not in self._states:
            known -= 1
        if known == 0 and (chat, ()) not in self._states:
            grammar = self.grammars[chat]
            self._states[chat, ()] = grammar.start() if grammar is not None else None
        state = self._states[chat, tokens[:known]]
        for i in range(known, len(tokens)):
            token = tokens[i]
            if state is not None:
                # an end token, or a dead end's forced end followed by padding: no longer constrained
                state = (
                    None
                    if token in self.stop
                    else self.grammars[chat].advance(state, self.texts[token])
                )
            self._states[chat, tokens[: i + 1]] = state
        return state

    def allowed(self, chat: int, state: State) -> list[int]:
        """Token ids an answer of chat ``chat`` in ``state`` may write next."""
        if (chat, state) not in self._allowed:
            grammar = self.grammars[chat]
            if grammar.complete(state):
                ok = self.stop
            else:
                # Past the head and the leading space only ids and separators can follow.
                lead = state.phase == HEAD or state.lead is not None
                alphabet = grammar.alphabet if lead else ID_CHARS
                ok = [
                    i for i, t in self.candidates(alphabet) if grammar.advance(state, t) is not None
                ]
            self._allowed[chat, state] = ok or self.stop
        return self._allowed[chat, state]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        beams = input_ids.shape[0] // len(self.grammars)
        for row, tokens in enumerate(input_ids[:, self.start :].tolist()):
            chat = row // beams
            state = self.state(chat, tuple(tokens))
            if state is None:
                continue
            keep = torch.tensor(self.allowed(chat, state), device=scores.device)
            masked = torch.full_like(scores[row], float("-inf"))
            masked[keep] = scores[row, keep]
            scores[row] = masked
        return scores
