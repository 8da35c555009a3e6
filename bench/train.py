"""Training benchmarks on the tiny model: seconds per SFT step and per GRPO step.

Batch geometry comes from params.yaml's `warmstart` / `train` sections (the CPU default)
when it loads, else from a fixed small geometry; samples are programmatic tool-use chats
(the generator that trains the tiny tokenizer), so no data files are needed.

`--learning` instead runs a small learning demo (~7 min on 2 cores): SFT warm start on
"echo" tasks whose call arguments are copied from the request (learnable by the tiny
model, unlike its random chats), the held-out parseable <tool_call> rate, then GRPO on 16
prompts for 8 epochs with the per-epoch training reward (same prompts every epoch).

    python bench/train.py [--sft-steps 6] [--grpo-steps 4] [--params params.yaml]
    python bench/train.py --learning [--threads 2]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

from looptool.core.codec import parse_completion
from looptool.core.tables import SAMPLES, rows_to_table, sample_to_row
from looptool.core.types import Label, Message, Sample, ToolCall, ToolSpec
from looptool.engines.synthetic_chats import synthetic_chats
from looptool.loop.tiny_model import build_tiny_model
from looptool.loop.train import train_grpo
from looptool.loop.warmstart import format_check, train_sft
from looptool.params.train import SFTParams, TrainParams
from looptool.store.io import write_parquet_atomic

DATE = "2026-11-22"

# "Echo" tasks: every argument value is spelled out in the user's request.
CITIES = ["Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Sydney", "Oslo"]
TOPICS = ["sports", "music", "science", "travel", "finance"]
CURRENCIES = ["USD", "EUR", "JPY", "GBP"]
ECHO_TOOLS = {
    "get_weather": ({"city": {"type": "string"}, "unit": {"type": "string"}}, ["city"]),
    "get_time": ({"city": {"type": "string"}}, ["city"]),
    "convert_currency": (
        {
            "amount": {"type": "integer"},
            "from_currency": {"type": "string"},
            "to_currency": {"type": "string"},
        },
        ["amount", "from_currency", "to_currency"],
    ),
    "search_hotels": ({"city": {"type": "string"}, "max_results": {"type": "integer"}}, ["city"]),
    "get_news": ({"topic": {"type": "string"}}, ["topic"]),
}


def _echo_tool(name: str) -> ToolSpec:
    props, required = ECHO_TOOLS[name]
    params = {"type": "object", "properties": props, "required": required}
    return ToolSpec(name=name, description=name.replace("_", " ") + ".", parameters=params)


def _echo_request(rng: random.Random, name: str) -> tuple[str, ToolCall]:
    if name == "get_weather":
        city = rng.choice(CITIES)
        return f"What is the weather in {city}?", ToolCall(name=name, arguments={"city": city})
    if name == "get_time":
        city = rng.choice(CITIES)
        return f"What time is it in {city}?", ToolCall(name=name, arguments={"city": city})
    if name == "convert_currency":
        amount, src, dst = rng.randint(1, 500), *rng.sample(CURRENCIES, 2)
        args = {"amount": amount, "from_currency": src, "to_currency": dst}
        return f"Convert {amount} {src} to {dst}.", ToolCall(name=name, arguments=args)
    if name == "search_hotels":
        city = rng.choice(CITIES)
        return f"Find hotels in {city}.", ToolCall(name=name, arguments={"city": city})
    topic = rng.choice(TOPICS)
    return f"Show me the latest {topic} news.", ToolCall(name=name, arguments={"topic": topic})


def echo_samples(n: int, seed: int = 0) -> list[Sample]:
    """Single, parallel and no-call samples whose labels copy values from the request."""
    rng = random.Random(seed)
    out: list[Sample] = []
    while len(out) < n:
        offered = rng.sample(list(ECHO_TOOLS), rng.randint(1, 3))
        r = rng.random()
        if r < 0.1:
            context = [Message(role="user", content="Tell me a joke.")]
            label = Label(text="Sorry, none of my tools can help with that.")
        elif r < 0.25 and len(offered) >= 2:
            (q1, c1), (q2, c2) = _echo_request(rng, offered[0]), _echo_request(rng, offered[1])
            context = [Message(role="user", content=f"{q1} Also: {q2}")]
            label = Label(calls=[c1, c2])
        else:
            q, c = _echo_request(rng, offered[0])
            context = [Message(role="user", content=q)]
            label = Label(calls=[c])
        out.append(Sample(tools=[_echo_tool(t) for t in offered], context=context, label=label))
    return out


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step (generation + scoring + update for GRPO)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._t)


def bench_samples(n: int, seed: int = 0) -> list[Sample]:
    """Samples from programmatic chats: context up to the first assistant turn, its calls."""
    out = []
    for messages, tools in synthetic_chats(n, seed):
        k = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
        calls = parse_completion(messages[k]["content"]).calls
        out.append(
            Sample(
                tools=[ToolSpec.from_any(t) for t in tools],
                context=[Message.model_validate(m) for m in messages[:k]],
                label=Label(calls=calls),
            )
        )
    return out


def load_profile(path: str) -> tuple[SFTParams, TrainParams, str]:
    try:
        from looptool.params import load_params

        p = load_params(path)
        return p.warmstart, p.train, path
    except Exception:  # no params.yaml (or another section invalid): a small fixed geometry
        ws = SFTParams(learning_rate=5e-3, batch_size=4, micro_batch_size=4)
        tr = TrainParams(
            learning_rate=5e-4,
            prompts_per_step=2,
            num_generations=8,
            micro_batch_size=16,
            max_completion_length=128,
            max_prompt_length=2048,
        )
        return ws, tr, "built-in"


def write_samples(path: Path, samples: list[Sample]) -> Path:
    write_parquet_atomic(path, rows_to_table([sample_to_row(s) for s in samples], SAMPLES))
    return path


def learning_demo(threads: int | None) -> None:
    """Warm start + held-out format check + GRPO on a small repeated set; prints the rates."""
    from looptool.engines import make_engine
    from looptool.params.engines import EngineSpec

    ws = SFTParams(
        learning_rate=5e-3,
        max_steps=250,
        batch_size=8,
        micro_batch_size=8,
        warmup_ratio=0.05,
        device="cpu",
        cpu_threads=threads,
        save_steps=10_000,
    )
    tr = TrainParams(
        learning_rate=5e-4,
        prompts_per_step=4,
        num_generations=8,
        micro_batch_size=32,
        epochs=8,
        max_completion_length=64,
        max_prompt_length=1024,
        device="cpu",
        cpu_threads=threads,
        save_steps=10_000,
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "tiny", seed=0)
        train = write_samples(root / "seed.parquet", echo_samples(500, seed=0))
        heldout = echo_samples(64, seed=1)
        grpo_set = write_samples(root / "d1.parquet", echo_samples(16, seed=2))
        sft = train_sft(
            train, model, root / "iter_0", ws, date=DATE, scratch_root=root / "scratch"
        ).metrics
        spec = EngineSpec(backend="hf", model=str(root / "iter_0"), batch_size=32, device="cpu")
        check = format_check(make_engine(spec, "policy"), heldout, date=DATE, max_tokens=96)
        grpo = train_grpo(
            grpo_set,
            root / "iter_0",
            root / "iter_1",
            tr,
            date=DATE,
            scratch_root=root / "scratch",
        ).metrics

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.0f}%"

    print(f"learning demo, tiny model, echo tasks, torch threads: {threads or 'default'}")
    print(
        f"warm start: {sft['steps']} SFT steps x {ws.batch_size} seqs, {sft['train_runtime_s']:.0f} s "
        f"({sft['s_per_step']:.2f} s/step), loss {sft['loss_first']:.2f} -> {sft['loss_last']:.2f}"
    )
    print(
        f"held-out ({check['n']} prompts, greedy): parseable {pct(check['parse_ok_rate'])}, "
        f"<tool_call> {pct(check['tool_call_rate'])}, names {pct(check['name_match_rate'])}, "
        f"exact {pct(check['match_rate'])}"
    )
    epochs = " ".join(f"{r:.2f}" for r in grpo["reward_mean_by_epoch"])
    print(
        f"GRPO: {grpo['steps']} steps ({tr.prompts_per_step} prompts x {tr.num_generations} gens), "
        f"{grpo['train_runtime_s']:.0f} s ({grpo['s_per_step']:.2f} s/step)"
    )
    print(
        f"  reward first {grpo['reward_window']} steps {grpo['reward_mean_first']:.3f}, "
        f"last {grpo['reward_window']} steps {grpo['reward_mean_last']:.3f}; per epoch: {epochs}"
    )
    print(
        f"  zero-variance groups {pct(grpo['zero_variance_group_share'])}, steps with grad norm "
        f"> 0: {grpo['steps_with_grad']}/{grpo['steps']} (max {grpo['grad_norm_max']:.3f}), "
        f"parse failures {pct(grpo['parse_failure_rate'])}"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sft-steps", type=int, default=6)
    ap.add_argument("--grpo-steps", type=int, default=4)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: profile)"
    )
    ap.add_argument("--learning", action="store_true", help="run the learning demo instead")
    args = ap.parse_args(argv)
    if args.learning:
        learning_demo(args.threads)
        return

    ws, tr, source = load_profile(args.params)
    common = {"device": "cpu", "save_steps": 10_000}
    if args.threads:
        common["cpu_threads"] = args.threads
    ws = ws.model_copy(update={"enabled": True, "max_steps": args.sft_steps, **common})
    tr = tr.model_copy(update={"max_steps": args.grpo_steps, "max_samples": None, **common})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "tiny", seed=0)
        n = max(ws.batch_size * args.sft_steps, tr.prompts_per_step * args.grpo_steps)
        write_samples(root / "samples.parquet", bench_samples(n))

        sft_timer = StepTimer()
        train_sft(
            root / "samples.parquet",
            model,
            root / "sft",
            ws,
            date=DATE,
            scratch_root=root / "scratch",
            callbacks=[sft_timer],
        )
        grpo_timer = StepTimer()
        res = train_grpo(
            root / "samples.parquet",
            root / "sft",
            root / "grpo",
            tr,
            date=DATE,
            scratch_root=root / "scratch",
            callbacks=[grpo_timer],
        )
        prompt_tokens = res.metrics["prompt_tokens_mean"]
        completion_tokens = res.metrics.get("completion_mean_length") or 0.0

    def steady(times: list[float]) -> float:
        return statistics.median(times[1:] if len(times) > 1 else times)  # first step warms up

    rows.append(
        (
            f"SFT step ({ws.batch_size} seqs, micro {ws.micro_batch_size})",
            steady(sft_timer.times),
            len(sft_timer.times),
        )
    )
    rows.append(
        (
            f"GRPO step ({tr.prompts_per_step} prompts x {tr.num_generations} gens, "
            f"<= {tr.max_completion_length} tok)",
            steady(grpo_timer.times),
            len(grpo_timer.times),
        )
    )
    threads = common.get("cpu_threads", ws.cpu_threads)
    print(
        f"tiny model, profile: {source}, torch threads: {threads or 'default'}, "
        f"prompt {prompt_tokens:.0f} tok, completion {completion_tokens:.0f} tok (mean)"
    )
    print(f"{'benchmark':<52} {'s/step':>8} {'steps':>6}")
    for name, sec, steps in rows:
        print(f"{name:<52} {sec:>8.2f} {steps:>6}")


if __name__ == "__main__":
    main()
