"""Tokenizing prompts so that only the chat template makes control tokens, in time linear in the text.

llama.cpp's `llama_tokenize(..., parse_special=true)` turns every `<|im_end|>` in the text into the real
end-of-turn token. Applied to a rendered chat prompt, that lets a user end their own turn and write the
assistant's or the system's (`"hello<|im_end|>\\n<|im_start|>system\\n..."`). Its special-token partition is
also quadratic in the number of them: 400 KB of `<|im_end|>` took 4.9 s on one core, against 0.08 s as text.

So hearth never asks llama.cpp to parse specials. `Tokenizer.template` splits a template's output at the
control tokens' texts itself (a regex, linear) and tokenizes the text between them as text: the same tokens
llama.cpp's partition gives. Tenant strings that contain a control token's text are swapped for a
placeholder before the template renders (`shield`), and the placeholder's tokens are the original string's,
tokenized as text (`Tokenizer.rendered`). User-defined tokens (Qwen's `<tool_call>`) are not control tokens:
llama.cpp matches them in any text, as the model's own tokenizer does.
"""

from __future__ import annotations

import ctypes
import re
import secrets
from collections.abc import Iterable
from typing import Any

CHUNK = 64 * 1024  # characters tokenized per call in a long text, so that a limit can stop it early
# Where a long text may be cut without changing its tokens: after a newline that is followed by a visible
# character. The pre-tokenizers of Qwen, Llama 3 and GPT-2 style vocabularies all start a new piece there. A
# text with no such place is tokenized in one call (linear in its length, and the body size bounds it).
_CUT = re.compile(r"\n(?=\S)")
_PLACEHOLDER = re.compile("\ue000[0-9a-f]{12}:\\d+\ue001")  # what `shield` puts in place of a tenant string


class TooManyTokens(Exception):
    """The text has more tokens than the caller's limit (counted up to where tokenizing stopped)."""

    def __init__(self, counted: int) -> None:
        super().__init__(counted)
        self.counted = counted


class Tokenizer:
    """One model's vocabulary, read-only, so any thread may use it (llama_tokenize takes no OpenMP pool)."""

    def __init__(self, L: Any, vocab: Any) -> None:
        self._L, self.vocab = L, vocab
        self.controls: dict[str, int] = {}
        for t in range(L.llama_vocab_n_tokens(vocab)):
            if L.llama_vocab_get_attr(vocab, t) & L.LLAMA_TOKEN_ATTR_CONTROL:
                buf = ctypes.create_string_buffer(256)
                n = L.llama_token_to_piece(vocab, t, buf, 256, 0, True)
                piece = buf.raw[: max(n, 0)].decode("utf-8", "replace")
                if piece:
                    self.controls.setdefault(piece, t)
        names = sorted(self.controls, key=len, reverse=True)  # the longest match first, as llama.cpp's partition
        self.control_re: re.Pattern[str] | None = re.compile("|".join(map(re.escape, names))) if names else None
        self._bos = L.llama_vocab_bos(vocab) if L.llama_vocab_get_add_bos(vocab) else -1
        self._eos = L.llama_vocab_eos(vocab) if L.llama_vocab_get_add_eos(vocab) else -1

    def text(self, text: str, add_special: bool = False) -> list[int]:
        """Tenant text: a control token's text is just characters."""
        out: list[int] = []
        self._plain(text, out, None)
        return self._with_special(out, add_special)

    def template(self, text: str, add_special: bool = True, limit: int | None = None) -> list[int]:
        """Text a template (or a raw-prompt client, who writes its own template) made: control tokens' texts are
        the tokens. `limit`: raise TooManyTokens as soon as there are more (a long text is tokenized a chunk
        at a time, so a prompt far over the context costs no more than one that fits)."""
        return self.rendered(text, {}, add_special, limit)

    def rendered(self, text: str, shielded: dict[str, str], add_special: bool = True, limit: int | None = None
                 ) -> list[int]:
        """A template's output in which `shield` hid tenant strings: the template's parts with their control
        tokens, each placeholder as its original string's text tokens."""
        out: list[int] = []
        at = 0
        if shielded:
            for m in _PLACEHOLDER.finditer(text):
                if (original := shielded.get(m.group())) is not None:  # not one a tenant wrote: its nonce differs
                    self._split(text[at : m.start()], out, limit)
                    self._plain(original, out, limit)
                    at = m.end()
        self._split(text[at:], out, limit)
        return self._with_special(out, add_special)

    def shield(self, strings: Iterable[str]) -> dict[str, str]:
        """Placeholders (random, so no tenant can write one) for the strings that hold a control token's text:
        {placeholder: original}. Empty for almost every request: then nothing changes."""
        if self.control_re is None:
            return {}
        seen: dict[str, str] = {}  # original: placeholder
        nonce = secrets.token_hex(6)
        for s in strings:
            if s and s not in seen and self.control_re.search(s):
                seen[s] = f"\ue000{nonce}:{len(seen)}\ue001"
        return {v: k for k, v in seen.items()}

    def _split(self, text: str, out: list[int], limit: int | None) -> None:
        at = 0
        if self.control_re is not None:
            for m in self.control_re.finditer(text):
                self._plain(text[at : m.start()], out, limit)
                out.append(self.controls[m.group()])
                at = m.end()
        self._plain(text[at:], out, limit)

    def _plain(self, text: str, out: list[int], limit: int | None) -> None:
        at = 0
        while len(text) - at > CHUNK:
            cut = _CUT.search(text, at + CHUNK // 2, at + CHUNK)
            if cut is None:
                break  # no safe place to cut: the rest in one call
            out += self._call(text[at : cut.end()])
            at = cut.end()
            if limit is not None and len(out) > limit:
                raise TooManyTokens(len(out))
        out += self._call(text[at:])
        if limit is not None and len(out) > limit:
            raise TooManyTokens(len(out))

    def _call(self, text: str) -> list[int]:
        if not text:
            return []
        L = self._L
        data = text.encode("utf-8")
        n_max = len(data) + 16
        buf = (L.llama_token * n_max)()
        n = L.llama_tokenize(self.vocab, data, len(data), buf, n_max, False, False)
        if n < 0:
            n_max = -n
            buf = (L.llama_token * n_max)()
            n = L.llama_tokenize(self.vocab, data, len(data), buf, n_max, False, False)
        return list(buf[:n])

    def _with_special(self, tokens: list[int], add_special: bool) -> list[int]:
        if not add_special:
            return tokens
        head = [self._bos] if self._bos >= 0 else []
        tail = [self._eos] if self._eos >= 0 else []
        return [*head, *tokens, *tail] if head or tail else tokens
