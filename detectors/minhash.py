"""MinHash signatures and near-duplicate clusters: the machinery under the near-duplicate
detector (:mod:`detectors.duplicates`) and the reference index (:mod:`detectors.reference`).

Signatures are computed for a whole batch at once with numpy, and are bit-identical to
``datasketch.MinHash(num_perm, seed, scheme="affine32", hashfunc=ShingleHash(...))``
updated with the same shingles, so they can be handed to any datasketch structure as
``LeanMinHash``. Every LSH candidate is verified with the exact Jaccard similarity of the
two shingle sets before it is reported.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

SCHEME = "affine32"
_PUNCT_OR_SPACE = re.compile(r"[\W_]+", re.UNICODE)
_POLY = np.uint32(0x01000193)  # FNV-1a prime: an odd multiplier for the rolling polynomial hash
_SEPARATOR = 0  # code point that never survives normalisation; marks document boundaries


def normalise(text: str, mode: str = "alnum") -> str:
    """Text as compared for near-duplication.

    ``alnum`` (default): NFKC, case-folded, every run of punctuation/whitespace made one
    space, so re-punctuated or re-spaced copies of a short answer still match.
    ``lower``: NFKC, case-folded, whitespace collapsed. ``raw``: unchanged.
    """
    if mode == "raw":
        return text
    text = unicodedata.normalize("NFKC", text).casefold()
    if mode == "alnum":
        return _PUNCT_OR_SPACE.sub(" ", text).strip()
    if mode == "lower":
        return " ".join(text.split())
    raise ValueError(f"unknown normalisation {mode!r}; use alnum, lower or raw")


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch applies it before permuting."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _poly_hash(codes: np.ndarray) -> np.uint32:
    h = np.uint32(0)
    with np.errstate(over="ignore"):
        for c in codes.astype(np.uint32):
            h = h * _POLY + c
    return h


@dataclass(frozen=True)
class ShingleHash:
    """datasketch ``hashfunc`` for one shingle given as UTF-8 bytes.

    Character shingles hash their code points with a polynomial hash; word shingles
    (words joined by a single space) hash each word that way and combine the word
    hashes with the same polynomial. This is what the vectorised path computes.
    """

    kind: str = "char"

    def __call__(self, shingle: bytes) -> int:
        text = shingle.decode("utf-8")
        if self.kind == "char":
            return int(_poly_hash(_codepoints(text)))
        word_hashes = np.array([_poly_hash(_codepoints(w)) for w in text.split(" ")], dtype=np.uint32)
        return int(_poly_hash(word_hashes))


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


@dataclass
class Signatures:
    """MinHash signatures of a batch plus the sorted unique shingle hashes of each text
    (kept for exact Jaccard verification of LSH candidates)."""

    hashvalues: np.ndarray  # [n, num_perm] uint32
    shingles: list[np.ndarray]
    seed: int

    def __len__(self) -> int:
        return self.hashvalues.shape[0]

    def lean(self, i: int) -> LeanMinHash:
        return LeanMinHash(seed=self.seed, hashvalues=self.hashvalues[i], scheme=SCHEME)


class MinHasher:
    """Vectorised MinHash over character or word n-gram shingles of normalised text."""

    def __init__(
        self, num_perm: int = 128, seed: int = 1, shingle: str = "char", n: int = 5, normalisation: str = "alnum"
    ):
        if shingle not in ("char", "word"):
            raise ValueError(f"shingle must be 'char' or 'word', not {shingle!r}")
        self.num_perm, self.seed, self.shingle, self.n, self.normalisation = num_perm, seed, shingle, n, normalisation
        a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
        self._a, self._b = a.astype(np.uint32), b.astype(np.uint32)

    def datasketch_minhash(self, text: str) -> MinHash:
        """The same signature through datasketch's own update path (slow; for checks)."""
        m = MinHash(num_perm=self.num_perm, seed=self.seed, scheme=SCHEME, hashfunc=ShingleHash(self.shingle))
        m.update_batch(self.shingle_strings(text))
        return m

    def shingle_strings(self, text: str) -> list[bytes]:
        norm = normalise(text, self.normalisation)
        if self.shingle == "char":
            grams = [norm[i : i + self.n] for i in range(max(1, len(norm) - self.n + 1))] if norm else []
        else:
            words = norm.split()
            grams = [" ".join(words[i : i + self.n]) for i in range(max(1, len(words) - self.n + 1))] if words else []
        return [g.encode("utf-8") for g in dict.fromkeys(grams)]

    def shingle_hashes(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Sorted unique 32-bit shingle hashes per text, computed for all texts at once."""
        norms = [normalise(t, self.normalisation) for t in texts]
        if self.shingle == "word":
            return self._word_shingle_hashes(norms)
        return self._char_shingle_hashes(norms)

    def _char_shingle_hashes(self, norms: list[str]) -> list[np.ndarray]:
        codes = _codepoints("\x00".join(norms))
        lengths = np.fromiter((len(t) for t in norms), dtype=np.int64, count=len(norms))
        return _rolling_shingles(codes, lengths, self.n)

    def _word_shingle_hashes(self, norms: list[str]) -> list[np.ndarray]:
        # Hash each distinct word once, then treat each text as a sequence of word hashes.
        vocabulary: dict[str, int] = {}
        word_ids = [[vocabulary.setdefault(w, len(vocabulary)) for w in t.split()] for t in norms]
        word_hash = _word_hashes(list(vocabulary))
        flat_ids = np.fromiter((i for ids in word_ids for i in ids), dtype=np.int64)
        sequence = np.empty(len(flat_ids) + len(norms), dtype=np.uint32)
        lengths = np.fromiter((len(ids) for ids in word_ids), dtype=np.int64, count=len(norms))
        # Interleave a separator slot after each text, as in the character path.
        is_word = np.ones(len(sequence), dtype=bool)
        is_word[np.cumsum(lengths + 1) - 1] = False
        sequence[is_word] = word_hash[flat_ids]
        sequence[~is_word] = _SEPARATOR
        return _rolling_shingles(sequence, lengths, self.n, separators=~is_word)

    def signatures(self, texts: Sequence[str], chunk_shingles: int = 1 << 15) -> Signatures:
        shingles = self.shingle_hashes(texts)
        values = np.full((len(texts), self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        counts = np.array([len(s) for s in shingles], dtype=np.int64)
        # Small chunks keep the [num_perm, chunk] working matrix in cache: ~5x faster
        # than permuting the whole batch at once.
        chunk_of_text = np.cumsum(counts) // chunk_shingles
        edges = np.flatnonzero(np.diff(chunk_of_text)) + 1
        for lo, hi in zip(np.concatenate([[0], edges]), np.concatenate([edges, [len(texts)]]), strict=True):
            self._minimise(shingles[lo:hi], counts[lo:hi], values[lo:hi])
        return Signatures(values, shingles, self.seed)

    def _minimise(self, shingles: list[np.ndarray], counts: np.ndarray, out: np.ndarray) -> None:
        nonempty = counts > 0
        if not nonempty.any():
            return
        flat = _fmix32(np.concatenate([s for s in shingles if len(s)]))
        permuted = np.empty((self.num_perm, len(flat)), dtype=np.uint32)
        with np.errstate(over="ignore"):
            np.multiply(self._a[:, None], flat[None, :], out=permuted)
            np.add(permuted, self._b[:, None], out=permuted)
        starts = np.concatenate([[0], np.cumsum(counts[nonempty])[:-1]])
        out[nonempty] = np.minimum.reduceat(permuted, starts, axis=1).T

    def describe(self) -> dict[str, Any]:
        return {
            "num_perm": self.num_perm,
            "seed": self.seed,
            "scheme": SCHEME,
            "shingle": self.shingle,
            "n": self.n,
            "normalisation": self.normalisation,
        }


def _word_hashes(words: list[str]) -> np.ndarray:
    """Polynomial hash of each whole word, vectorised: sum of code * P**(len-1-pos)."""
    if not words:
        return np.empty(0, dtype=np.uint32)
    codes = _codepoints("".join(words))
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    position = np.arange(len(codes)) - np.repeat(starts, lengths)
    exponent = np.repeat(lengths, lengths) - 1 - position
    powers = np.ones(int(lengths.max()), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for k in range(1, len(powers)):
            powers[k] = powers[k - 1] * _POLY
        return np.add.reduceat(codes * powers[exponent], starts, dtype=np.uint32)


def _rolling_shingles(
    codes: np.ndarray, lengths: np.ndarray, n: int, separators: np.ndarray | None = None
) -> list[np.ndarray]:
    """Sorted unique hashes of every length-``n`` window inside each document of a
    separator-joined sequence; a document shorter than ``n`` is one shingle, itself whole."""
    total = len(codes)
    doc_starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
    hashes = np.zeros(total, dtype=np.uint32)
    with np.errstate(over="ignore"):
        for k in range(n):
            shifted = np.zeros(total, dtype=np.uint32)
            shifted[: max(total - k, 0)] = codes[k:]  # a batch can be shorter than n
            hashes = hashes * _POLY + shifted
    is_sep = (codes == _SEPARATOR) if separators is None else separators
    # A window is valid when it holds no separator: count separators with prefix sums.
    sep_prefix = np.concatenate([[0], np.cumsum(is_sep, dtype=np.int64)])
    starts = np.arange(total)
    ends = np.minimum(starts + n, total)
    valid_idx = np.flatnonzero((sep_prefix[ends] == sep_prefix[:total]) & (starts + n <= total))
    bounds = np.append(np.searchsorted(valid_idx, doc_starts), len(valid_idx))
    result = []
    for d, length in enumerate(lengths):
        if length == 0:
            result.append(np.empty(0, dtype=np.uint32))
        elif length < n:
            start = doc_starts[d]
            result.append(np.array([_poly_hash(codes[start : start + length])], dtype=np.uint32))
        else:
            result.append(np.unique(hashes[valid_idx[bounds[d] : bounds[d + 1]]]))
    return result


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted, unique shingle-hash arrays."""
    if len(a) == 0 or len(b) == 0:
        return 0.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (len(a) + len(b) - inter)


@dataclass
class DuplicateClusters:
    """Per text: cluster id (-1 when it has no verified near-duplicate), cluster size,
    the most similar other text in the batch and that similarity."""

    cluster: np.ndarray
    size: np.ndarray
    nearest: np.ndarray
    nearest_jaccard: np.ndarray


def candidate_pairs(hashvalues: np.ndarray, bands: int, rows: int, max_bucket: int = 64) -> np.ndarray:
    """Pairs of texts that agree on every value of at least one LSH band, as ``[k, 2]``.

    Buckets larger than ``max_bucket`` (the same answer pasted hundreds of times) are
    linked as a chain rather than all pairs; clustering only needs connectivity.
    """
    pairs = []
    n = hashvalues.shape[0]
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    multipliers = np.random.RandomState(0).randint(1, 2**62, size=rows, dtype=np.int64).astype(np.uint64) | np.uint64(1)
    for band in range(bands):
        block = hashvalues[:, band * rows : (band + 1) * rows].astype(np.uint64)
        with np.errstate(over="ignore"):
            keys = (block * multipliers[None, :]).sum(axis=1, dtype=np.uint64)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        group_starts = np.flatnonzero(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]]))
        group_sizes = np.diff(np.append(group_starts, n))
        for start, size in zip(group_starts[group_sizes > 1], group_sizes[group_sizes > 1], strict=True):
            members = order[start : start + size]
            if size <= max_bucket:
                i, j = np.triu_indices(size, k=1)
                pairs.append(np.stack([members[i], members[j]], axis=1))
            else:
                pairs.append(np.stack([members[:-1], members[1:]], axis=1))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    allpairs = np.sort(np.concatenate(pairs), axis=1)
    return np.unique(allpairs, axis=0)


def cluster_near_duplicates(
    signatures: Signatures, threshold: float, bands: int, rows: int, groups: np.ndarray | None = None
) -> DuplicateClusters:
    """Connected components of LSH candidate pairs whose exact Jaccard is >= threshold.
    ``groups`` (a label per text): only texts of the same group are compared."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(signatures)
    nearest = np.full(n, -1, dtype=np.int64)
    nearest_jaccard = np.zeros(n, dtype=np.float64)
    pairs = candidate_pairs(signatures.hashvalues, bands, rows)
    if groups is not None:
        pairs = pairs[groups[pairs[:, 0]] == groups[pairs[:, 1]]]
    kept = []
    for i, j in pairs:
        sim = jaccard(signatures.shingles[i], signatures.shingles[j])
        if sim < threshold:
            continue
        kept.append((i, j))
        for a, b in ((i, j), (j, i)):
            if sim > nearest_jaccard[a]:
                nearest_jaccard[a], nearest[a] = sim, b
    if not kept:
        return DuplicateClusters(np.full(n, -1), np.ones(n, dtype=np.int64), nearest, nearest_jaccard)
    edges = np.array(kept)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)[labels]
    # Renumber clusters 0..k-1 in order of first appearance; singletons get -1.
    cluster = np.full(n, -1, dtype=np.int64)
    in_cluster = sizes > 1
    _, first = np.unique(labels[in_cluster], return_inverse=True)
    cluster[in_cluster] = first
    return DuplicateClusters(cluster, sizes, nearest, nearest_jaccard)


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) datasketch picks for this threshold, weighting misses over false hits:
    candidates are verified exactly, so a false candidate only costs time."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.2, 0.8))
    return lsh.b, lsh.r
