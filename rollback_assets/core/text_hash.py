"""pandas' 64-bit hash of text, computed from Arrow's string buffers with numpy.

`pd.util.hash_array` hashes a string as SipHash-2-4 of its UTF-8 bytes (keyed with pandas' default key)
followed by a 64-bit mixer; a missing category hashes as the largest uint64. pandas does it one Python
string at a time with the GIL held, so files read on two threads hashed one after the other, and making
the Python strings cost as much as hashing them. Here every string's SipHash runs at once as numpy
array operations over the Arrow buffers: no Python object per value, and the GIL released inside each
operation. The results are pandas' own (tested against it), so hashes stored by earlier versions
(`raw_feedback.content_hash`) still match the same rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

U8MAX = np.uint64(np.iinfo(np.uint64).max)  # what pandas gives a missing category
_KEY = np.frombuffer(b"0123456789123456", dtype="<u8")  # pandas' default hash key, as SipHash's k0, k1
_INIT = np.array([0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573], dtype=np.uint64)
_LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(8)], dtype=np.uint64)  # mask of the first n bytes


def hash_text(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """pandas' hash of each value of a string column, as `hash_pandas_object` gives it for the column as
    a Categorical (or as objects without nulls); a null hashes as U8MAX. Distinct values are hashed once."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if values.type not in (pa.string(), pa.large_string()):
        values = values.cast(pa.large_string())
    encoded = pc.dictionary_encode(values)
    hashed = mix(siphash(encoded.dictionary))
    indices = encoded.indices
    out = hashed.take(pc.fill_null(indices, 0).to_numpy()) if len(hashed) else np.zeros(len(values), np.uint64)
    if indices.null_count:
        out[indices.is_null().to_numpy(zero_copy_only=False)] = U8MAX
    return out


def mix(values: np.ndarray) -> np.ndarray:
    """pandas' redistribution of a 64-bit hash (the splitmix64 finaliser), in place."""
    with np.errstate(over="ignore"):
        values ^= values >> np.uint64(30)
        values *= np.uint64(0xBF58476D1CE4E5B9)
        values ^= values >> np.uint64(27)
        values *= np.uint64(0x94D049BB133111EB)
        values ^= values >> np.uint64(31)
    return values


def combine(hashes: list[np.ndarray]) -> np.ndarray:
    """pandas' combination of per-column hashes into one per row (`combine_hash_arrays`, CPython's old
    tuple hash), as `hash_pandas_object(frame, index=False)` applies it to a frame's columns in order."""
    out = np.zeros_like(hashes[0]) + np.uint64(0x345678)
    mult = np.uint64(1000003)
    with np.errstate(over="ignore"):
        for i, column in enumerate(hashes):
            out ^= column
            out *= mult
            mult += np.uint64(82520 + 2 * (len(hashes) - i))
        out += np.uint64(97531)
    return out


def siphash(strings: pa.Array) -> np.ndarray:
    """SipHash-2-4 of each non-null string's UTF-8 bytes under pandas' key. All strings advance together
    one 8-byte word at a time, longest first, so a step works on the strings that still have words."""
    n = len(strings)
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int64 if strings.type == pa.large_string() else np.int32)
    offsets = offsets[strings.offset:strings.offset + n + 1].astype(np.int64)
    data = strings.buffers()[2]
    # Eight zero bytes after the data: the last string's final word may read past its end (masked off).
    padded = np.concatenate([np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8),
                             np.zeros(8, np.uint8)])
    word_at = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))  # 8 bytes from any byte
    starts, lengths = offsets[:-1], np.diff(offsets)
    full_words = lengths // 8
    order = np.argsort(-full_words, kind="stable")
    starts, lengths, full_words = starts[order], lengths[order], full_words[order]
    v0, v1, v2, v3 = (np.full(n, _INIT[i] ^ _KEY[i % 2], dtype=np.uint64) for i in range(4))
    scratch = np.empty(n, dtype=np.uint64)
    # Strings with more than j full words are the first `still[j]` (sorted longest first).
    still = np.searchsorted(-full_words, -np.arange(int(full_words.max()) if n else 0), side="left")
    with np.errstate(over="ignore"):
        for j, k in enumerate(still):
            word = word_at[starts[:k] + 8 * j]
            _absorb(word, v0[:k], v1[:k], v2[:k], v3[:k], scratch[:k])
        tail = lengths - 8 * full_words
        last = (word_at[starts + 8 * full_words] & _LOW_BYTES[tail]) | ((lengths.astype(np.uint64) & np.uint64(0xFF)) << np.uint64(56))
        _absorb(last, v0, v1, v2, v3, scratch)
        v2 ^= np.uint64(0xFF)
        for _ in range(4):
            _round(v0, v1, v2, v3, scratch)
    out = np.empty(n, dtype=np.uint64)
    out[order] = v0 ^ v1 ^ v2 ^ v3
    return out


def _absorb(word, v0, v1, v2, v3, scratch) -> None:
    v3 ^= word
    _round(v0, v1, v2, v3, scratch)
    _round(v0, v1, v2, v3, scratch)
    v0 ^= word


def _round(v0, v1, v2, v3, scratch) -> None:
    """One SipRound, in place."""
    v0 += v1; _rotl(v1, 13, scratch); v1 ^= v0; _rotl(v0, 32, scratch)  # noqa: E702
    v2 += v3; _rotl(v3, 16, scratch); v3 ^= v2  # noqa: E702
    v0 += v3; _rotl(v3, 21, scratch); v3 ^= v0  # noqa: E702
    v2 += v1; _rotl(v1, 17, scratch); v1 ^= v2; _rotl(v2, 32, scratch)  # noqa: E702


_SHIFTS = {b: (np.uint64(b), np.uint64(64 - b)) for b in (13, 16, 17, 21, 32)}


def _rotl(x: np.ndarray, bits: int, scratch: np.ndarray) -> None:
    left, right = _SHIFTS[bits]
    np.right_shift(x, right, out=scratch)
    np.left_shift(x, left, out=x)
    np.bitwise_or(x, scratch, out=x)
