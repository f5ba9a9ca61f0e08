"""``prompt_injection: {model: PATH}``: your own Hugging Face sequence classifier, through
onnxruntime (``pip install 'tether[detectors]'``: onnxruntime, tokenizers).

PATH is what ``optimum-cli export onnx --task text-classification`` writes: a folder with
``model.onnx``, ``tokenizer.json`` and ``config.json`` (whose ``id2label`` names the outputs), or
the ``.onnx`` file itself with the other two next to it. The score of a text is the softmax
probability of the injection label(s), the largest over its windows: a text longer than
``max_length`` tokens is split into overlapping windows. Which labels mean injection comes from
``injection_labels`` or, by default, from ``id2label``: labels named like injection, jailbreak,
malicious, unsafe, attack (Prompt Guard 2 only says ``LABEL_0``/``LABEL_1``: name
``injection_labels: [LABEL_1]``).

With an event loop running, :meth:`ClassifierGuard.check` returns an awaitable: concurrent
checks within ``batch_wait_ms`` are run as one batch (at most ``batch_size`` texts) on a worker
thread, never on the loop. Without one (``tether guards scan``, scripts) it runs the model in the
calling thread. The attack-pattern heuristics of the built-in guard run alongside unless
``heuristics: false``; the verdict's score is ``max(heuristics, model)``, the model's
probability rescaled so that ``model_threshold`` maps to 0.5. When the heuristics alone already
fail the text, the model is not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tether.config.guards import InjectionOptions
from tether.errors import ConfigError
from tether.guards.base import Finding, GuardContext, Verdict
from tether.guards.builtin.injection import Heuristics, rescale

INSTALL = "pip install 'tether[detectors]'"
ATTACK_WORDS = ("injection", "jailbreak", "malicious", "unsafe", "attack")
NOT_PREFIXES = ("not", "non", "no_", "no-", "benign", "safe")
MODEL_FILES = ("model.onnx", "onnx/model.onnx")
MAX_STRIDE = 64


def load_extra() -> SimpleNamespace:
    """onnxruntime, tokenizers and numpy, or a ConfigError saying what to install."""
    modules = {}
    for name in ("onnxruntime", "tokenizers", "numpy"):
        try:
            modules[name] = importlib.import_module(name)
        except ImportError:
            raise ConfigError(
                f"prompt_injection model: needs the {name} package; {INSTALL}"
            ) from None
    return SimpleNamespace(
        ort=modules["onnxruntime"], tk=modules["tokenizers"], np=modules["numpy"]
    )


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """Where a model's three files are."""

    model: Path
    tokenizer: Path
    config: Path | None

    @classmethod
    def find(cls, path: str) -> ModelFiles:
        root = Path(path).expanduser()
        if not root.exists():
            raise ConfigError(
                f"prompt_injection model: {root} does not exist; give the folder an ONNX export "
                "wrote (model.onnx, tokenizer.json, config.json), absolute or relative to the "
                "working directory"
            )
        if root.is_file():
            model, folder = root, root.parent
        else:
            found = [root / name for name in MODEL_FILES if (root / name).is_file()]
            if not found:
                raise ConfigError(
                    f"prompt_injection model: no model.onnx in {root}; export the model with "
                    "`optimum-cli export onnx --task text-classification --model ID FOLDER`"
                )
            model, folder = found[0], root
        tokenizer = _beside("tokenizer.json", model.parent, folder)
        if tokenizer is None:
            raise ConfigError(
                f"prompt_injection model: no tokenizer.json next to {model}; save the model's "
                "fast tokenizer there (tokenizer.save_pretrained(FOLDER))"
            )
        return cls(model, tokenizer, _beside("config.json", model.parent, folder))


def _beside(name: str, *folders: Path) -> Path | None:
    return next((d / name for d in folders if (d / name).is_file()), None)


def model_labels(files: ModelFiles, given: list[str] | None) -> list[str]:
    """The model's labels in output order: ``labels:`` or config.json's ``id2label``."""
    if given is not None:
        return list(given)
    if files.config is None:
        raise ConfigError(
            f"prompt_injection model: no config.json next to {files.model}, so the labels are "
            "unknown; add config.json or list them in output order: labels: [SAFE, INJECTION]"
        )
    try:
        id2label = json.loads(files.config.read_text(encoding="utf-8"))["id2label"]
        return [str(id2label[k]) for k in sorted(id2label, key=int)]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"prompt_injection model: cannot read id2label from {files.config} ({exc!r}); fix "
            "it or list the labels in output order: labels: [SAFE, INJECTION]"
        ) from None


def attack_indices(labels: Sequence[str], chosen: list[str] | None, where: Path) -> list[int]:
    """The output indices that mean injection: ``chosen`` names them, or they are guessed from
    the labels' names. Refuses when none (or every label) would count."""
    found = ", ".join(labels)
    if chosen is not None:
        folded = [label.casefold() for label in labels]
        unknown = [c for c in chosen if c.casefold() not in folded]
        if unknown:
            raise ConfigError(
                f"prompt_injection model {where}: injection_labels {', '.join(unknown)} not "
                f"among the model's labels ({found}); name some of those"
            )
        picked = [i for i, label in enumerate(folded) if label in {c.casefold() for c in chosen}]
    else:
        picked = [i for i, label in enumerate(labels) if _sounds_like_attack(label)]
        if not picked:
            raise ConfigError(
                f"prompt_injection model {where}: cannot tell which label means injection; "
                f"labels found: {found}; set injection_labels: [{labels[-1]}] (or the right ones)"
            )
    if len(picked) == len(labels):
        raise ConfigError(
            f"prompt_injection model {where}: every label ({found}) would count as injection, "
            "so every text would fail; set injection_labels to the attack labels only"
        )
    return picked


def _sounds_like_attack(label: str) -> bool:
    low = label.casefold()
    return any(w in low for w in ATTACK_WORDS) and not low.startswith(NOT_PREFIXES)


@dataclass(slots=True)
class OnnxClassifier:
    """A loaded sequence classifier: ``predict(texts)`` -> probability of injection per text.

    ``runs`` counts the model runs so far (a diagnostic: batching makes it grow slower than
    the number of texts)."""

    session: Any
    tokenizer: Any
    np: Any
    labels: tuple[str, ...]
    attack: tuple[int, ...]
    feeds: dict[str, Any]  # model input name -> numpy integer dtype
    output: str
    pad_id: int
    batch_size: int
    runs: int = field(default=0)

    @classmethod
    def load(cls, options: InjectionOptions) -> OnnxClassifier:
        """Load ``options.model``; ConfigError naming the file and the fix on any problem."""
        if options.model is None:
            raise ConfigError("prompt_injection: no model: PATH to load")
        extra = load_extra()
        files = ModelFiles.find(options.model)
        labels = model_labels(files, options.labels)
        if len(labels) < 2:
            raise ConfigError(
                f"prompt_injection model {files.model}: one label ({', '.join(labels)}); "
                "use a classifier with a label per class (e.g. SAFE, INJECTION)"
            )
        attack = attack_indices(labels, options.injection_labels, files.model)
        session = open_session(extra.ort, files.model, options.threads)
        tokenizer, padding = open_tokenizer(extra.tk, files.tokenizer, options.max_length)
        feeds, output = session_io(session, extra.np, files.model)
        classifier = cls(
            session, tokenizer, extra.np, tuple(labels), tuple(attack), feeds, output,
            pad_token(tokenizer, padding, files.config), options.batch_size,
        )  # fmt: skip
        classifier.verify(files.model)
        return classifier

    def verify(self, where: Path) -> None:
        """One run at start-up: the model runs and has an output per label."""
        try:
            width = self.logits([self.tokenizer.encode("hello").ids]).shape[-1]
        except Exception as exc:  # noqa: BLE001 - any failure to run is a config error
            raise ConfigError(
                f"prompt_injection model {where}: a test run failed ({exc}); is it a "
                "text-classification export whose tokenizer.json belongs to it?"
            ) from None
        if width != len(self.labels):
            raise ConfigError(
                f"prompt_injection model {where}: {width} outputs but {len(self.labels)} labels "
                f"({', '.join(self.labels)}); list one label per output in labels: [...]"
            )
        self.runs = 0

    def predict(self, texts: Sequence[str]) -> list[float]:
        """Probability of injection per text (the largest over its windows)."""
        windows: list[list[int]] = []
        owner: list[int] = []
        for i, enc in enumerate(self.tokenizer.encode_batch(list(texts))):
            for part in (enc, *enc.overflowing):
                windows.append(part.ids)
                owner.append(i)
        best = [0.0] * len(texts)
        for i, p in zip(owner, self.window_scores(windows), strict=True):
            best[i] = max(best[i], p)
        return best

    def window_scores(self, windows: Sequence[list[int]]) -> list[float]:
        """Scores of token windows, run in batches of similar length."""
        np = self.np
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        scores = [0.0] * len(windows)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            logits = self.logits([windows[i] for i in chunk]).astype(np.float64)
            if not np.isfinite(logits).all():  # fail (on_error decides), never pass silently
                raise ValueError("the model returned non-finite logits")
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
            attack = probs[:, list(self.attack)].sum(axis=1)
            for i, p in zip(chunk, attack.tolist(), strict=True):
                scores[i] = min(1.0, max(0.0, float(p)))
        return scores

    def logits(self, seqs: Sequence[list[int]]) -> Any:
        """One model run over padded token id sequences: logits [batch, labels]."""
        np = self.np
        width = max(1, *(len(s) for s in seqs))
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        given = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feeds = {name: given[name].astype(dtype) for name, dtype in self.feeds.items()}
        self.runs += 1
        (out,) = self.session.run([self.output], feeds)
        return out


def open_session(ort: Any, model: Path, threads: int | None) -> Any:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    if threads is not None:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types; all mean a bad file
        raise ConfigError(
            f"prompt_injection model: onnxruntime cannot load {model} ({exc}); export it again "
            "with optimum-cli export onnx"
        ) from None


def open_tokenizer(tk: Any, path: Path, max_length: int) -> tuple[Any, Any]:
    """The tokenizer, set to window at ``max_length``, and the padding it was saved with."""
    try:
        tokenizer = tk.Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exception on a bad file
        raise ConfigError(
            f"prompt_injection model: cannot read {path} ({exc}); save the model's fast "
            "tokenizer there (tokenizer.save_pretrained(FOLDER))"
        ) from None
    padding = tokenizer.padding
    tokenizer.no_padding()  # each batch is padded to its longest window here
    specials = tokenizer.num_special_tokens_to_add(False)
    if max_length <= specials + 1:
        raise ConfigError(f"prompt_injection model: max_length {max_length} is too short")
    stride = min(MAX_STRIDE, (max_length - specials) // 4)
    tokenizer.enable_truncation(max_length, stride=stride)
    return tokenizer, padding


def session_io(session: Any, np: Any, model: Path) -> tuple[dict[str, Any], str]:
    """The inputs the model takes (name -> dtype) and the output holding the logits."""
    dtypes = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
    feeds: dict[str, Any] = {}
    for inp in session.get_inputs():
        if inp.name not in ("input_ids", "attention_mask", "token_type_ids"):
            raise ConfigError(
                f"prompt_injection model {model}: unexpected input {inp.name!r}; tether feeds "
                "input_ids, attention_mask and token_type_ids (a text-classification export)"
            )
        if inp.type not in dtypes:
            raise ConfigError(
                f"prompt_injection model {model}: input {inp.name} is {inp.type}; tether feeds "
                "int64 or int32 token ids (export it again with optimum-cli export onnx)"
            )
        feeds[inp.name] = dtypes[inp.type]
    if "input_ids" not in feeds:
        raise ConfigError(
            f"prompt_injection model {model}: it takes no input_ids; give a text-classification "
            "export (optimum-cli export onnx --task text-classification)"
        )
    names = [out.name for out in session.get_outputs()]
    return feeds, "logits" if "logits" in names else names[0]


def pad_token(tokenizer: Any, padding: Any, config: Path | None) -> int:
    """The id padded positions get: the tokenizer's, config.json's, [PAD]/<pad>, else 0."""
    if padding and padding.get("pad_id") is not None:
        return int(padding["pad_id"])
    if config is not None:
        with contextlib.suppress(OSError, ValueError, TypeError):
            pad = json.loads(config.read_text(encoding="utf-8")).get("pad_token_id")
            if isinstance(pad, int):
                return pad
    for token in ("[PAD]", "<pad>"):
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    return 0  # padded positions are masked out anyway


# --------------------------------------------------------------------------- batching


@dataclass(slots=True)
class _Queue:
    items: list[tuple[str, asyncio.Future[float]]] = field(default_factory=list)
    full: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class MicroBatcher:
    """Runs ``predict`` over the texts that concurrent callers of one event loop submit within
    ``wait_s`` of each other (at most ``max_batch`` at a time), on the loop's default executor.
    While a batch runs, new texts queue for the next one."""

    def __init__(
        self, predict: Callable[[list[str]], list[float]], *, max_batch: int, wait_s: float
    ) -> None:
        self._predict = predict
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = (
            weakref.WeakKeyDictionary()
        )

    async def submit(self, text: str) -> float:
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        done: asyncio.Future[float] = loop.create_future()
        queue.items.append((text, done))
        if len(queue.items) >= self.max_batch:
            queue.full.set()
        if queue.task is None:
            queue.task = loop.create_task(self._drain(queue, loop))
        return await done

    async def _drain(self, queue: _Queue, loop: asyncio.AbstractEventLoop) -> None:
        try:
            if self.wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.wait_s):
                        await queue.full.wait()
            while queue.items:
                batch = [it for it in queue.items[: self.max_batch] if not it[1].done()]
                del queue.items[: self.max_batch]
                queue.full.clear()
                if batch:
                    await self._run(batch, loop)
        finally:
            queue.task = None

    async def _run(
        self, batch: list[tuple[str, asyncio.Future[float]]], loop: asyncio.AbstractEventLoop
    ) -> None:
        texts = [text for text, _ in batch]
        try:
            scores = await loop.run_in_executor(None, self._predict, texts)
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for (_, waiter), score in zip(batch, scores, strict=True):
            if not waiter.done():
                waiter.set_result(score)


# --------------------------------------------------------------------------- the guard


class ClassifierGuard:
    """``prompt_injection`` with ``model: PATH``: your classifier (+ the heuristics)."""

    def __init__(
        self,
        options: InjectionOptions,
        threshold: float = 0.5,
        *,
        classifier: OnnxClassifier | None = None,
    ) -> None:
        self.options = options
        self.threshold = threshold
        self.classifier = classifier or OnnxClassifier.load(options)
        self._heuristics = Heuristics() if options.heuristics else None
        self._batcher = MicroBatcher(
            self.classifier.predict,
            max_batch=options.batch_size,
            wait_s=options.batch_wait_ms / 1000.0,
        )

    def check(self, text: str, ctx: GuardContext) -> Verdict | Awaitable[Verdict]:
        heuristic, findings = 0.0, list[Finding]()
        if self._heuristics is not None:
            heuristic, findings = self._heuristics.scan(text)
        if heuristic >= self.threshold or not text.strip():
            return self.verdict(heuristic, None, findings)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no event loop: run here
            return self.verdict(heuristic, self.classifier.predict([text])[0], findings)
        return self._acheck(text, heuristic, findings)

    async def _acheck(self, text: str, heuristic: float, findings: list[Finding]) -> Verdict:
        return self.verdict(heuristic, await self._batcher.submit(text), findings)

    def verdict(self, heuristic: float, model: float | None, findings: list[Finding]) -> Verdict:
        scaled = 0.0 if model is None else rescale(model, self.options.model_threshold)
        score = max(heuristic, scaled)
        if score < self.threshold:
            return Verdict.ok(score)
        if model is not None and scaled >= heuristic:
            why = f"model: {'/'.join(self.classifier.labels[i] for i in self.classifier.attack)}"
            why += f" p={model:.2f}"
        else:
            why = ", ".join(sorted({f.type for f in findings}))
        return Verdict.fail(
            f"looks like a prompt injection ({why}), score {score:.2f} >= {self.threshold}",
            score=score,
            findings=tuple(findings),
        )
