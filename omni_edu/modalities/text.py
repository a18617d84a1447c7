"""Text as tokens: a word-level tokenizer for OmniWorld's small language.

Real models use subword tokenizers (BPE) with 30k-250k entries. OmniWorld's captions
and questions use about a hundred words, so one id per word is enough and every id is
easy to read. Special tokens mark structure in interleaved sequences:

* ``<pad>`` (id 0) fills short sequences; ``<bos>``/``<eos>`` start and end one;
  ``<unk>`` stands for any word outside the vocabulary;
* ``<boi>``/``<eoi>`` and ``<boa>``/``<eoa>`` bracket image and audio tokens;
* task tokens choose what to generate: ``<caption>`` (image -> text), ``<draw>``
  (text -> image), ``<transcribe>`` (audio -> text), ``<speak>`` (text -> audio),
  ``<answer>`` (question -> answer), ``<sep>`` separates parts (question | options).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch

from omni_edu.modalities.vocabulary import WORDS

SPECIAL_TOKENS = (
    "<pad>",
    "<bos>",
    "<eos>",
    "<unk>",
    "<boi>",
    "<eoi>",
    "<boa>",
    "<eoa>",
    "<caption>",
    "<draw>",
    "<transcribe>",
    "<speak>",
    "<answer>",
    "<sep>",
)
_TOKEN = re.compile(r"<[a-z]+>|[a-z0-9]+")


class TextTokenizer:
    """Word-level tokenizer: special tokens first (``<pad>`` = 0), then words in sorted order.

    words: the vocabulary; default every word OmniWorld can write
    (:data:`omni_edu.modalities.vocabulary.WORDS`).
    """

    def __init__(self, words: Iterable[str] | None = None) -> None:
        words = sorted(set(WORDS if words is None else words) - set(SPECIAL_TOKENS))
        bad = [w for w in words if not re.fullmatch(r"[a-z0-9]+", w)]
        if bad:
            raise ValueError(
                f"words should be lower-case letters/digits without spaces; got {bad[:5]}"
            )
        self.tokens: list[str] = [*SPECIAL_TOKENS, *words]
        self.ids: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab_size={self.vocab_size})"

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def __getitem__(self, token: str) -> int:
        """Id of a token, e.g. ``tokenizer["<draw>"]``."""
        if token not in self.ids:
            raise ValueError(f"{token!r} is not in the vocabulary (see tokenizer.tokens)")
        return self.ids[token]

    pad_id = property(lambda self: self.ids["<pad>"])
    bos_id = property(lambda self: self.ids["<bos>"])
    eos_id = property(lambda self: self.ids["<eos>"])
    unk_id = property(lambda self: self.ids["<unk>"])
    boi_id = property(lambda self: self.ids["<boi>"])
    eoi_id = property(lambda self: self.ids["<eoi>"])
    boa_id = property(lambda self: self.ids["<boa>"])
    eoa_id = property(lambda self: self.ids["<eoa>"])

    @property
    def special_ids(self) -> dict[str, int]:
        """Every special token and its id."""
        return {t: self.ids[t] for t in SPECIAL_TOKENS}

    @staticmethod
    def split(text: str) -> list[str]:
        """Normalise and split: lower case, punctuation dropped, special tokens kept whole."""
        if not isinstance(text, str):
            raise TypeError(f"text should be a str; got {type(text).__name__}")
        return _TOKEN.findall(text.lower())

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of ``text``; unknown words become ``<unk>``."""
        ids = [self.ids.get(w, self.unk_id) for w in self.split(text)]
        return [self.bos_id] * bos + ids + [self.eos_id] * eos

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special: bool = False) -> str:
        """Text of ``ids``, words joined by spaces. ``skip_special`` drops ``<pad>``,
        ``<bos>``, ``<eos>`` and the other special tokens (``<unk>`` stays visible)."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(
                    f"decode takes one sequence (seq,); got {tuple(ids.shape)}. "
                    "Use decode_batch for (batch, seq)."
                )
            ids = ids.tolist()
        words = []
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary 0..{self.vocab_size - 1}")
            token = self.tokens[i]
            if skip_special and token in SPECIAL_TOKENS and token != "<unk>":
                continue
            words.append(token)
        return " ".join(words)

    def encode_batch(
        self,
        texts: Sequence[str],
        bos: bool = False,
        eos: bool = False,
        max_len: int | None = None,
    ) -> torch.Tensor:
        """Encode several texts into one ``(batch, seq)`` int64 tensor, padded on the right
        with ``<pad>`` to the longest (or cut to ``max_len``)."""
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of texts; for one text use encode")
        if len(texts) == 0:
            raise ValueError("texts is empty; expected at least one text")
        encoded = [self.encode(t, bos=bos, eos=eos) for t in texts]
        length = max(len(e) for e in encoded) if max_len is None else max_len
        out = torch.full((len(encoded), length), self.pad_id, dtype=torch.long)
        for row, ids in enumerate(encoded):
            ids = ids[:length]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode_batch(self, ids: torch.Tensor, skip_special: bool = True) -> list[str]:
        """Texts of a ``(batch, seq)`` id tensor; padding and markers dropped by default.
        Decoding of a row stops at its first ``<eos>``."""
        if ids.dim() != 2:
            raise ValueError(f"ids should be (batch, seq); got {tuple(ids.shape)}")
        texts = []
        for row in ids.tolist():
            if self.eos_id in row:
                row = row[: row.index(self.eos_id)]
            texts.append(self.decode(row, skip_special=skip_special))
        return texts

    def chars_per_token(self, texts: Sequence[str]) -> float:
        """Average characters of text (spaces included) per token: how much one token holds."""
        chars = sum(len(" ".join(self.split(t))) for t in texts)
        tokens = sum(len(self.encode(t)) for t in texts)
        return chars / max(tokens, 1)
