"""Generating class descriptions with an LLM through the ``openai`` client (image captions for
L_cap use the same requester and fan-out: :mod:`vldlib.text.llm_captions`).

``generate_descriptions`` fills a description cache (:mod:`vldlib.describe_cache`): it asks an
OpenAI-compatible chat-completions server (``base_url``; the OpenAI API by default) for ``n``
descriptions of every class that the cache lacks, ``concurrency`` requests at a time, and saves
the cache atomically after each class, so an interrupted run resumes where it stopped. Failed
requests with status 429 or 5xx (and connection errors / timeouts, ``timeout`` seconds per
request in all, :mod:`vldlib.text.deadline`) are retried, each retry said in one line ("retrying
(n/N) after D s: reason"), with exponential backoff, ``base_delay * 2**attempt`` capped at
``max_delay``, or the server's ``Retry-After`` (``retry-after-ms``) when it sends one of at most
:data:`RETRY_AFTER_CAP` seconds (a longer one ends the run: "try again later"). The openai
client's own retries are switched off (``max_retries=0``) so that this module alone decides.
Answers are cleaned and bounded (:mod:`vldlib.text.clean`); an answer empty after cleaning is
retried.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Sequence

from vldlib import __version__
from vldlib.text.cache import DescriptionCache, cache_path, fill_prompt, read_cache, resolve_prompt, update_cache
from vldlib.text.clean import MAX_PER_CLASS, clean_text
from vldlib.text.deadline import RETRY_AFTER_CAP, deadline_http_client, retry_after

class DescriptionsUnavailable(ValueError):
    """Descriptions are missing and cannot be generated (no API key, no cache)."""


class LLMResponseError(RuntimeError):
    """The LLM server failed (after retries) or answered with a malformed body."""


def generator_string() -> str:
    """``"vldlib <version> / openai <version>"`` (provenance of generated descriptions)."""
    import openai  # optional heavy client, imported only when descriptions are generated

    return f"vldlib {__version__} / openai {openai.__version__}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def parse_completion(body: str, name: str, where: str) -> list[tuple[str, bool]]:
    """The cleaned ``choices[i].message.content`` strings of a chat-completions response body,
    each with whether it was cut to length (:func:`vldlib.text.clean.clean_text`).

    Anything else (not JSON, no choices, a choice without string content) raises
    :class:`LLMResponseError` naming the class and quoting what was received. Texts empty after
    cleaning are left out (the caller asks again when none is left).
    """
    def bad(why: str) -> LLMResponseError:
        shown = body if len(body) <= 300 else body[:300] + "..."
        return LLMResponseError(
            f"malformed chat-completions response from {where} for class {name!r}: {why}; "
            f"expected JSON with choices[i].message.content strings, received: {shown!r}")

    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        raise bad("the body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) \
            or not data["choices"]:
        raise bad("no 'choices' list")
    out = []
    for choice in data["choices"]:
        content = choice.get("message", {}).get("content") if isinstance(choice, dict) else None
        if not isinstance(content, str):
            raise bad("a choice has no text in message.content")
        text, cut = clean_text(content)
        if text:
            out.append((text, cut))
    return out


class _Requester:
    """One class -> ``n`` descriptions, with retries. Shared by the worker threads."""

    def __init__(self, client: Any, *, model: str, template: str, temperature: float,
                 max_retries: int, base_delay: float, max_delay: float, where: str,
                 sleep: Callable[[float], None], timeout: float = 30.0,
                 log: Callable[[str], None] | None = None, subject: str = "class") -> None:
        self.subject = subject
        self.client = client
        self.model = model
        self.template = template
        self.temperature = temperature
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.where = where
        self.sleep = sleep
        self.timeout = timeout
        self.log = log

    def _call(self, prompt: str | list[dict[str, Any]], n: int, name: str) -> list[tuple[str, bool]]:
        """Cleaned answers ``(text, cut)`` (at least one) to one request, retried as said above."""
        import openai

        last: str = ""
        timeouts = 0
        for attempt in range(self.max_retries + 1):
            try:
                raw = self.client.chat.completions.with_raw_response.create(
                    model=self.model, temperature=self.temperature, n=n,
                    messages=[{"role": "user", "content": prompt}])
            except openai.APIStatusError as err:
                status = err.status_code
                if status != 429 and not 500 <= status < 600:
                    raise LLMResponseError(
                        f"{self.where} refused the request for {self.subject} {name!r} with HTTP "
                        f"{status}: {err.message}; check the model name, the API key and "
                        "--base-url") from err
                last = f"HTTP {status}: {err.message}"
                delay = retry_after(err.response.headers)
                if delay is not None and delay > RETRY_AFTER_CAP:
                    raise LLMResponseError(
                        f"server {self.where} asks to retry after {delay:.0f} s; try again later") from None
            except openai.APITimeoutError:
                timeouts += 1
                last = f"no answer within {self.timeout:g} s (timeout)"
                delay = None
            except openai.APIConnectionError as err:
                last = f"{type(err).__name__}: {err}"
                delay = None
            else:
                answers = parse_completion(raw.text, name, self.where)
                if answers:
                    return answers
                last = "the answer was empty after removing control characters and whitespace"
                delay = None
            if attempt == self.max_retries:
                break
            if delay is None:
                delay = min(self.max_delay, self.base_delay * 2 ** attempt)
            if self.log is not None:
                self.log(f"{'describe' if self.subject == 'class' else 'caption'}: {self.subject} {name!r}: "
                         f"retrying ({attempt + 1}/{self.max_retries}) after {delay:g} s: {last}")
            self.sleep(delay)
        if timeouts == self.max_retries + 1:
            raise LLMResponseError(
                f"{self.where} never answered for {self.subject} {name!r}: {timeouts} attempts of "
                f"{self.timeout:g} s each timed out (model {self.model!r}); check that the server is "
                "running and reachable (--base-url), or raise --timeout for a slow model (finished "
                "ones are cached)")
        raise LLMResponseError(
            f"{self.where} failed for {self.subject} {name!r} after {self.max_retries + 1} attempts "
            f"(model {self.model!r}; last: {last}); try again later (finished ones are cached and will not be "
            "requested again) or raise max_retries / base_delay")

    def __call__(self, name: str, need: int, n_per_request: int) -> tuple[list[str], str, list[int]]:
        """Ask until ``need`` sentences are collected (servers may return fewer choices);
        returns them, the filled prompt and the indices of the sentences that were cut."""
        prompt = fill_prompt(self.template, name)
        got: list[tuple[str, bool]] = []
        for _ in range(need):  # at least one new sentence per round, so at most `need` rounds
            got += self._call(prompt, min(n_per_request, need - len(got)), name)
            if len(got) >= need:
                break
        got = got[:need]
        return [text for text, _ in got], prompt, [i for i, (_, cut) in enumerate(got) if cut]


def _fan_out(items: Sequence[Any], job: Callable[[Any], Any], on_result: Callable[[Any, Any], None], *,
             concurrency: int, desc: str, unit: str, progress: bool) -> None:
    """Run ``job(item)`` for every item, ``concurrency`` at a time, calling ``on_result(item,
    result)`` in this thread as each finishes. The first failure stops new requests (running ones
    finish and are kept) and is raised after the pool is shut down."""
    from tqdm.auto import tqdm

    stop = threading.Event()

    def guarded(item: Any) -> Any:
        if stop.is_set():
            return _SKIPPED
        try:
            return job(item)
        except BaseException:
            stop.set()
            raise

    errors: list[BaseException] = []
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress)
    pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items))), thread_name_prefix="vld-llm")
    try:
        todo: dict[Future, Any] = {pool.submit(guarded, item): item for item in items}
        pending = set(todo)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                if fut.cancelled():
                    continue
                err = fut.exception()
                if err is not None:
                    if not errors:  # stop starting new requests; let running ones finish
                        for other in pending:
                            other.cancel()
                    errors.append(err)
                    continue
                result = fut.result()
                if result is _SKIPPED:  # skipped after another item failed
                    continue
                on_result(todo[fut], result)
                bar.update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if errors:
        raise errors[0]


_SKIPPED = object()


def _missing_message(dataset: str, variant: str, missing: Sequence[str], path: Path,
                     api_key_env: str) -> str:
    shown = ", ".join(repr(c) for c in missing[:20])
    more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
    return (
        f"{len(missing)} class(es) of {dataset!r} have no {variant!r} descriptions yet: "
        f"{shown}{more}. Provide them in one of these ways: (1) set {api_key_env} to an "
        "OpenAI API key and run again (python -m vldlib describe ...); (2) point at any "
        "OpenAI-compatible server with --base-url URL (base_url=...), e.g. a local LLM server; "
        f"(3) write the cache file by hand at {path} in the format "
        '{"descriptions": {"class name": ["one sentence.", ...], ...}} '
        "(see vldlib.describe_cache for the full schema).")


def generate_descriptions(
    classes: Sequence[str],
    *,
    dataset: str,
    model: str,
    prompt: str = "main",
    n: int = 1,
    temperature: float = 1.0,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    out: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    concurrency: int = 4,
    n_per_request: int | None = None,
    max_retries: int = 5,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    timeout: float = 30.0,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] | None = None,
    lock_timeout: float = 30.0,
) -> dict[str, list[str]]:
    """Fill the cache of ``(dataset, prompt, model)`` and return ``{class: [sentence] * n}``.

    Only classes with fewer than ``n`` cached descriptions are requested; a complete cache
    needs neither a key nor a server. ``prompt`` is a :data:`PROMPTS` key or a user's own text
    containing ``{cls}``. The API key is read from ``os.environ[api_key_env]``; it may be absent
    when ``base_url`` is given (local servers usually need none). ``n_per_request`` (default
    ``n``) is the chat-completions ``n`` of one request. The cache is saved after every class.
    ``timeout``: seconds one request may take in all, however slowly the server sends (a server
    that never answers costs ``(max_retries + 1) * timeout`` plus the backoff, each wait at most
    ``max_delay`` or :data:`RETRY_AFTER_CAP` s, then a clear error); a server asking to wait
    longer than that ends the run ("try again later"). Each retry is said with ``log`` (default:
    one line on stderr, "retrying (n/N) after D s: reason"). Answers are cleaned and cut to
    length (:mod:`vldlib.text.clean`). Each class is merged into the file under its lock
    (:func:`vldlib.text.cache.update_cache`, waiting at most ``lock_timeout`` s), so runs filling
    one file at once keep each other's descriptions; a class another run described meanwhile
    keeps that run's set and this run's is saved under ``alternates`` (said with ``log``).
    """
    variant, template = resolve_prompt(prompt)
    names = list(dict.fromkeys(classes))
    if not names or not all(isinstance(c, str) and c.strip() for c in names):
        raise ValueError("classes must be a non-empty list of class names")
    if not 1 <= n <= MAX_PER_CLASS:
        raise ValueError(f"n (descriptions per class) must be between 1 and {MAX_PER_CLASS}, got {n}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if not timeout > 0:
        raise ValueError(f"timeout (seconds per request) must be > 0, got {timeout!r}")
    if max_retries < 0 or base_delay < 0 or max_delay < 0:
        raise ValueError("max_retries, base_delay and max_delay must be >= 0")
    path = Path(out) if out is not None else cache_path(dataset, variant, model, cache_dir)

    if path.exists():
        cache = read_cache(path)
        if cache.prompt and cache.prompt != template:
            raise ValueError(
                f"{path} holds descriptions made with a different prompt ({cache.prompt!r}); "
                "use another --out file or delete it")
        cache.classes = list(dict.fromkeys(list(cache.classes) + names))
    else:
        cache = DescriptionCache(dataset=dataset, variant=variant, prompt=template, model=model,
                                 classes=list(names))
    cache.dataset = cache.dataset or dataset
    cache.variant = cache.variant or variant
    cache.prompt = cache.prompt or template
    cache.model = cache.model or model

    missing = cache.missing(names, n)
    if not missing:
        return {c: cache.descriptions[c][:n] for c in names}

    api_key = os.environ.get(api_key_env)
    if not api_key:
        if base_url is None:
            raise DescriptionsUnavailable(
                _missing_message(dataset, variant, missing, path, api_key_env))
        api_key = "not-needed"  # OpenAI-compatible local servers usually ignore the key

    import openai

    client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout,
                           http_client=deadline_http_client(timeout, base_url))
    where = base_url or "the OpenAI API"
    say = log if log is not None else _stderr
    requester = _Requester(client, model=model, template=template, temperature=temperature,
                           max_retries=max_retries, base_delay=base_delay,
                           max_delay=max_delay, where=where, sleep=sleep, timeout=timeout, log=say)
    generator = generator_string()
    per_request = n if n_per_request is None else max(1, int(n_per_request))
    needs = {name: n - len(cache.descriptions.get(name, [])) for name in missing}
    state = {"cache": cache}

    def job(name: str) -> tuple[list[str], str, list[int]]:
        return requester(name, needs[name], per_request)

    def keep(name: str, result: tuple[list[str], str, list[int]]) -> None:
        sentences, filled, cut = result
        provenance = {"prompt": filled, "model": model, "temperature": temperature, "n": n,
                      "time": _now(), "generator": generator, "base_url": base_url}
        state["cache"], aside = update_cache(path, state["cache"], name, sentences, provenance, n, cut=cut,
                                             lock_timeout=lock_timeout)
        if aside:
            say(f"describe: class {name!r} was described by another run meanwhile; its descriptions are "
                f"kept, these {len(aside)} are saved under 'alternates' in {path}")

    try:
        _fan_out(missing, job, keep, concurrency=concurrency, desc=f"describe {dataset}/{variant}", unit="class",
                 progress=progress)
    finally:
        client.close()
    cache = state["cache"]
    return {c: cache.descriptions[c][:n] for c in names}
