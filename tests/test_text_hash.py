"""`text_hash` must give pandas' own hashes (stored content hashes depend on it), for every length
around SipHash's 8-byte words, multi-byte text, nulls, and the ways Arrow lays strings out."""

import random

import numpy as np
import pandas as pd
import pyarrow as pa

from rollback_assets.core.text_hash import U8MAX, combine, hash_text

RNG = random.Random(7)
ALPHABET = "abc XYZ09,.äöüß€😀中"
TEXTS = (["", "a", "abcdefg", "abcdefgh", "abcdefghi", "😀", "x" * 15, "y" * 16, "z" * 17]
         + ["".join(RNG.choice(ALPHABET) for _ in range(RNG.choice([1, 7, 8, 9, 23, 24, 25, 200, 3000])))
            for _ in range(500)]
         + ["repeated value"] * 20)


def pandas_hash(values: list) -> np.ndarray:
    """What pandas gives the column as a Categorical (how the content hash has always seen text)."""
    return pd.util.hash_pandas_object(pd.Series(values, dtype="category"), index=False).to_numpy()


def test_every_string_hashes_as_pandas_hashes_it():
    assert np.array_equal(hash_text(pa.array(TEXTS)), pandas_hash(TEXTS))
    # without nulls, pandas hashes plain objects the same way
    assert np.array_equal(hash_text(pa.array(TEXTS)), pd.util.hash_array(np.array(TEXTS, dtype=object)))


def test_nulls_hash_as_a_missing_category():
    values = [None, "a", None, "b" * 30, None]
    hashed = hash_text(pa.array(values))
    assert np.array_equal(hashed, pandas_hash(values))
    assert (hashed[[0, 2, 4]] == U8MAX).all()
    assert (hash_text(pa.array([None, None], pa.string())) == U8MAX).all()


def test_slices_chunks_and_large_strings_hash_like_the_plain_array():
    expected = pandas_hash(TEXTS)
    array = pa.array(TEXTS)
    assert np.array_equal(hash_text(array.slice(3, 100)), expected[3:103])
    assert np.array_equal(hash_text(pa.chunked_array([array.slice(0, 50), array.slice(50)])), expected)
    assert np.array_equal(hash_text(array.cast(pa.large_string())), expected)
    assert hash_text(pa.array([], pa.string())).shape == (0,)


def test_rows_combine_as_pandas_combines_a_frame():
    frame = pd.DataFrame({"a": pd.Categorical(TEXTS), "b": pd.Categorical(list(reversed(TEXTS)))})
    combined = combine([hash_text(pa.array(TEXTS)), hash_text(pa.array(list(reversed(TEXTS))))])
    assert np.array_equal(combined, pd.util.hash_pandas_object(frame, index=False).to_numpy())
