"""A content hash of a tokenizer, part of every features cache key."""

from __future__ import annotations

import hashlib

_TOKENIZER_IDS: dict[int, str] = {}


def tokenizer_identity(tokenizer) -> str:
    """Hash of the vocabulary, normaliser and template, so a changed tokenizer never reuses
    stale cached features (memoised per tokenizer object: serialising it is not free)."""
    key = id(tokenizer)
    if key not in _TOKENIZER_IDS:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
        _TOKENIZER_IDS[key] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return _TOKENIZER_IDS[key]
