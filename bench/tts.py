"""TTS benchmark: time to first audio, HTTP overhead and real-time factor, in one run.

    .venvs/stack/bin/python bench/tts.py                         # tiny XTTS built here, CPU
    .venvs/stack/bin/python bench/tts.py --model-dir /data/models/xtts --device cuda
    .venvs/chatterbox/bin/python bench/tts.py --engine chatterbox   # its test checkpoint, CPU

1. Time to first audio byte of a 10-sentence text through `genstack-xtts serve`, streamed
   (default) and not (``stream: false``: the whole file first), against the baseline the
   issue names: synthesizing the first sentence alone, in-process. Target: streamed first
   byte within 1.5x of that.
2. HTTP overhead per request: the same request (same seed, same encoding work) through the
   server and in-process (engine + the server's own AudioPipeline), median of N, on the
   weightless tone engine: its synthesis takes under a millisecond, so the difference is the
   server's own cost (HTTP, validation, model thread hand-offs, streaming). The overhead does
   not depend on the engine; measured with XTTS on a shared CPU it drowns in the synthesis
   time's jitter (hundreds of ms). Target: under 5 ms.
3. Real-time factor (synthesis seconds per second of audio) of the 10-sentence text.

Without --model-dir a tiny random checkpoint is built (real architecture, small GPT; it speaks
noise), so the figures show the server's overheads, not XTTS's quality or GPU speed.

``--engine chatterbox`` (in chatterbox's own env: its pins clash with the stack env's) does 1
and 2 for `genstack-chatterbox serve` on its test checkpoint (full-size random weights, each
sentence about 0.5 s of noise; genstack.testing.chatterbox builds it once): the baseline is
measured first and its model freed before the server loads its own, since two loaded
Chatterbox models would not fit beside the rest of a small machine; the streamed request is
closed at its first byte (Chatterbox makes a sentence at a time: the rest is not measured).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script
from genstack.tts.engine import SynthesisParams, TTSEngine
from genstack.tts.synthesis import SENTENCE_END, AudioPipeline
from genstack.tts.text import split_sentences
from genstack.tts.tone import ToneEngine

TEXT = (
    "The station was quiet before dawn. A single train waited at the far platform. "
    "Its windows were dark and its doors were closed. Somewhere a radio played softly. "
    "The conductor checked his watch twice. Then he looked down the empty track. "
    "Nobody came, so he climbed aboard. The engine woke with a low hum. "
    "Slowly the train began to move. By sunrise it was gone."
)
SHORT = "Hello there."


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


@contextmanager
def server(argv: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    url = f"http://127.0.0.1:{port}"
    process = ServiceProcess(argv, env=env, log_path=log, ready_url=f"{url}/readyz")
    try:
        process.wait_ready(timeout=600)
        yield url
    finally:
        process.stop()


def in_process(
    engine: TTSEngine, text: str, voice: Any, *, seed: int, fmt: str, stream: bool
) -> tuple[float, float, float]:
    """(seconds to the first encoded bytes, seconds in all, audio seconds): the server's
    work without HTTP — sentence split, synthesis, joins and encoding."""
    started = time.perf_counter()
    params = SynthesisParams(language=engine.languages[0], seed=seed)
    pipeline = AudioPipeline(
        fmt, engine.sample_rate, speed=1.0, native_speed=engine.native_speed, streaming=stream
    )
    first = None
    for sentence in split_sentences(text, engine.max_chunk_chars(params.language)):
        for chunk in engine.synthesize(sentence, voice, params, stream=stream):
            if pipeline.feed(chunk) and first is None:
                first = time.perf_counter() - started
        pipeline.feed(SENTENCE_END)
    pipeline.finish()
    total = time.perf_counter() - started
    return (first if first is not None else total), total, pipeline.duration_s


def over_http(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[float, float, int]:
    """(seconds to the first audio byte, seconds in all, bytes)."""
    started = time.perf_counter()
    first = None
    size = 0
    with client.stream("POST", f"{url}/v1/audio/speech", json=body) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            if chunk and first is None:
                first = time.perf_counter() - started
            size += len(chunk)
    total = time.perf_counter() - started
    return (first if first is not None else total), total, size


def interleaved(
    n: int, runs: dict[str, Callable[[], tuple[float, float, Any]]]
) -> dict[str, tuple[list[float], list[float]]]:
    """Each run once per round, n rounds: what the machine is doing meanwhile (this one is
    shared) weighs on every variant alike, so their medians compare."""
    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in runs}
    for _ in range(n):
        for name, run in runs.items():
            first, total, _ = run()
            results[name][0].append(first)
            results[name][1].append(total)
    return results


def first_byte_over_http(
    client: httpx.Client, url: str, body: dict[str, Any]
) -> tuple[float, float, int]:
    """(seconds to the first audio byte, the same, bytes so far): the stream is closed then."""
    started = time.perf_counter()
    with client.stream("POST", f"{url}/v1/audio/speech", json=body) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            if chunk:
                first = time.perf_counter() - started
                return first, first, len(chunk)
    raise RuntimeError("no audio came")


def cancelled_total(client: httpx.Client, url: str) -> float:
    for line in client.get(f"{url}/metrics").text.splitlines():
        if line.startswith("genstack_tts_cancelled_total "):
            return float(line.split()[1])
    return 0.0


def first_byte_then_idle(
    client: httpx.Client, url: str, body: dict[str, Any]
) -> tuple[float, float, int]:
    """first_byte_over_http, then wait for the server to drop the rest (it stops after the
    sentence it is making), so the next request does not queue behind it."""
    before = cancelled_total(client, url)
    result = first_byte_over_http(client, url, body)
    deadline = time.monotonic() + 300
    while cancelled_total(client, url) <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    return result


def overhead_rows(work: Path, runs: int) -> tuple[float, float]:
    """(in-process ms, HTTP ms) of one short request on the weightless tone engine."""
    tone_port = free_port()
    tone_argv = [console_script("genstack-tts-tone"), "serve", "--port", str(tone_port)]
    tone_env = {"TTS_VOICES_DIR": str(work / "voices"), "LOG_LEVEL": "WARNING"}
    tone = ToneEngine()
    tone.load()
    with server(tone_argv, tone_env, tone_port, work / "tone.log") as url, httpx.Client() as http:
        short = {"input": SHORT, "voice": "alto", "seed": 2, "response_format": "wav"}
        for _ in range(5):
            over_http(http, url, short)  # warm-up
        alto = tone.builtin_voice("alto")
        tone_runs = interleaved(
            runs,
            {
                "http": lambda: over_http(http, url, short),
                "local": lambda: in_process(tone, SHORT, alto, seed=2, fmt="wav", stream=True),
            },
        )
    return median_ms(tone_runs["local"][1]), median_ms(tone_runs["http"][1])


def chatterbox_main(args: argparse.Namespace) -> int:
    import gc

    from genstack.chatterbox.engine import ChatterboxEngine
    from genstack.testing.chatterbox import cached_chatterbox_checkpoint

    work = Path(tempfile.mkdtemp(prefix="genstack-bench-tts-"))
    given = args.model_dir is not None
    model_dir = args.model_dir or cached_chatterbox_checkpoint(
        "english", command=Path(console_script("genstack-chatterbox"))
    )
    print(f"model: {model_dir} ({'given' if given else 'test checkpoint'})", flush=True)
    engine = ChatterboxEngine(model_dir, device=args.device)
    engine.load()
    voice = engine.builtin_voice("default")
    chunks = split_sentences(TEXT, engine.max_chunk_chars("en"))
    for _ in range(2):  # torch's first calls are slower: warm up
        in_process(engine, chunks[0], voice, seed=1, fmt="mp3", stream=False)
    alone = [
        in_process(engine, chunks[0], voice, seed=1, fmt="mp3", stream=False)[1]
        for _ in range(args.runs)
    ]
    del engine, voice
    gc.collect()

    port = free_port()
    env = {
        "CHATTERBOX_HOST": "127.0.0.1",
        "CHATTERBOX_PORT": str(port),
        "CHATTERBOX_MODEL_DIR": str(model_dir),
        "CHATTERBOX_DEVICE": args.device,
        "TTS_VOICES_DIR": str(work / "voices"),
        "OUTPUT_DIR": str(work / "outputs"),
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "WARNING",
    }
    argv = [console_script("genstack-chatterbox"), "serve"]
    with server(argv, env, port, work / "chatterbox.log") as url, httpx.Client(timeout=600) as http:
        body = {"input": TEXT, "voice": "default", "seed": 1, "response_format": "mp3"}
        for _ in range(2):
            first_byte_then_idle(http, url, body)
        streamed = [first_byte_then_idle(http, url, body)[0] for _ in range(args.runs)]
    baseline = statistics.median(alone)
    first = statistics.median(streamed)
    local_ms, remote_ms = overhead_rows(work, args.overhead_runs)
    print("\n| Chatterbox, time to first audio | seconds | vs baseline |\n|---|---:|---:|")
    print(f"| first sentence alone, in-process (baseline) | {baseline:.3f} | 1.00x |")
    print(
        f"| first byte, {len(chunks)} sentences, streamed | {first:.3f} | "
        f"{first / baseline:.2f}x (target <= 1.5x) |"
    )
    print(
        f"\n| one short request, median of {args.overhead_runs} | in-process ms | HTTP ms "
        "| overhead ms (target < 5) |\n|---|---:|---:|---:|"
    )
    print(f"| tone engine | {local_ms:.1f} | {remote_ms:.1f} | {remote_ms - local_ms:.1f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", default="xtts", choices=["xtts", "chatterbox"])
    parser.add_argument("--model-dir", type=Path, help="a real checkpoint folder")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of the long text")
    parser.add_argument("--overhead-runs", type=int, default=30)
    args = parser.parse_args(argv)
    if args.engine == "chatterbox":
        return chatterbox_main(args)

    from genstack.xtts.engine import XttsEngine
    from genstack.xtts.tiny import build_tiny_checkpoint

    work = Path(tempfile.mkdtemp(prefix="genstack-bench-tts-"))
    model_dir = args.model_dir or build_tiny_checkpoint(work / "tiny-xtts")
    print(f"model: {model_dir} ({'given' if args.model_dir else 'tiny, built here'})", flush=True)
    engine = XttsEngine(model_dir, device=args.device)
    engine.load()
    voice_name = engine.builtin_voices()[0]
    voice = engine.builtin_voice(voice_name)
    first_sentence = split_sentences(TEXT, engine.max_chunk_chars("en"))[0]
    sentences = len(split_sentences(TEXT, engine.max_chunk_chars("en")))
    # torch's first calls with new shapes are several times slower than later ones: warm up
    # with every input measured below before timing anything.
    for _ in range(3):
        in_process(engine, first_sentence, voice, seed=1, fmt="mp3", stream=False)
    in_process(engine, TEXT, voice, seed=1, fmt="mp3", stream=False)

    port = free_port()
    env = {
        "XTTS_HOST": "127.0.0.1",
        "XTTS_PORT": str(port),
        "XTTS_MODEL_DIR": str(model_dir),
        "XTTS_DEVICE": args.device,
        "TTS_VOICES_DIR": str(work / "voices"),
        "OUTPUT_DIR": str(work / "outputs"),
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "WARNING",
    }
    xtts_argv = [console_script("genstack-xtts"), "serve"]
    rows: list[tuple[str, float, str]] = []
    with server(xtts_argv, env, port, work / "xtts.log") as url, httpx.Client(timeout=600) as http:
        body = {"input": TEXT, "voice": voice_name, "seed": 1, "response_format": "mp3"}
        for _ in range(2):  # warm-up, as in-process above
            over_http(http, url, body)
            over_http(http, url, {**body, "stream": False})
        timed = interleaved(
            args.runs,
            {
                "alone": lambda: in_process(
                    engine, first_sentence, voice, seed=1, fmt="mp3", stream=False
                ),
                "streamed": lambda: over_http(http, url, body),
                "whole": lambda: over_http(http, url, {**body, "stream": False}),
            },
        )
        alone_total = timed["alone"][1]
        streamed_first = timed["streamed"][0]
        whole_first, whole_total = timed["whole"]
        _, _, audio_s = in_process(engine, TEXT, voice, seed=1, fmt="mp3", stream=False)
        baseline = statistics.median(alone_total)
        rows += [
            ("first sentence alone, in-process (baseline)", baseline, "1.00x"),
            (
                f"first byte, {sentences} sentences, streamed",
                statistics.median(streamed_first),
                f"{statistics.median(streamed_first) / baseline:.2f}x (target <= 1.5x)",
            ),
            (
                f"first byte, {sentences} sentences, not streamed",
                statistics.median(whole_first),
                f"{statistics.median(whole_first) / baseline:.2f}x",
            ),
        ]
        rtf = statistics.median(whole_total) / audio_s

    local_ms, remote_ms = overhead_rows(work, args.overhead_runs)

    print("\n| time to first audio | seconds | vs baseline |\n|---|---:|---:|")
    for name, seconds, ratio in rows:
        print(f"| {name} | {seconds:.3f} | {ratio} |")
    print(
        f"\nreal-time factor ({audio_s:.1f} s of audio, not streamed): {rtf:.3f} "
        f"({1 / rtf:.1f}x faster than real time)"
    )
    print(
        f"\n| one short request, median of {args.overhead_runs} | in-process ms | HTTP ms "
        "| overhead ms (target < 5) |\n|---|---:|---:|---:|"
    )
    print(f"| tone engine | {local_ms:.1f} | {remote_ms:.1f} | {remote_ms - local_ms:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
