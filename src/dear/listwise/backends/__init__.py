"""Text generation back ends for listwise reranking and CoT data generation.

Each has ``generate(conversations, chat=True) -> list[Generation]`` (one per chat, in order),
``count_tokens(messages, chat) -> int`` and ``prompt_limit`` (context minus generation budget; ``None``: unknown).
Local transformers also has ``score_answers(conversations, answers, on_done=...)`` (``scores_answers``) for
``listwise.scoring=first_id``, calling ``on_done(i, scores)`` as each chat is scored (the reranker builds its
windows from those calls), and takes per-chat grammars (``constrains``) for ``listwise.constrained``.
Heavy libraries are imported when a back end is built.
"""

from dear.listwise.backends.base import Generation

__all__ = ["Generation"]
