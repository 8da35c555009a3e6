"""The `hf` backend: any local transformers checkpoint, CPU or GPU.

- generate: left-padded batches with explicit position ids and a KV cache; a batch gives
  the same greedy tokens as decoding each request alone. Sampling uses one torch
  Generator per (request, sample index), so a sampled result does not depend on which
  other requests share its batch (what the request cache assumes).
- score: teacher-forced, right-padded batches; log_softmax + gather over completion
  tokens only (logits are kept from the shortest prompt onwards, not for the whole
  sequence). The completion is scored as tokenized alone and appended to the prompt ids;
  no end-of-turn token is added.
- choose: each option is scored as the completion followed by the end-of-turn token; the
  highest SUM of log-probs wins (the option's sequence likelihood; ``choice_score: mean``
  switches to the length-normalized mean). Ties go to the earlier option.
A request longer than the model (prompt + completion > ``max_model_len`` / the model's
``max_position_embeddings``) gets a :class:`~looptool.engines.base.Failed` in its place;
the rest of the batch runs. Weights and tokenizer load from a local directory only
(``local_files_only=True``).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from looptool.core.types import canonical_json
from looptool.engines.base import (
    ChatRequest,
    ChoiceRequest,
    EngineError,
    Failed,
    Generation,
    SamplingParams,
    Score,
    ScoreRequest,
    best_option,
    first_stop,
    request_to_json,
    too_long_failure,
)
from looptool.engines.chat_template import encode_chat, encode_text, end_of_turn_id, eos_token_ids
from looptool.engines.checkpoint import model_fingerprint
from looptool.params.engines import EngineSpec

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineError(
            "device 'cuda' requested but CUDA is not available (use device: auto or cpu)"
        )
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[dtype]


@dataclass
class _Row:
    """One sequence to decode: a request's prompt and one of its n samples."""

    req: int
    prompt: list[int]
    params: SamplingParams
    seed: int | None  # None: greedy


def _row_seed(request: ChatRequest, index: int) -> int:
    blob = canonical_json({"r": request_to_json(request), "i": index})
    return int.from_bytes(hashlib.sha256(blob.encode("utf-8")).digest()[:8], "big") >> 1


class HFEngine:
    """Engine over ``AutoModelForCausalLM`` + ``AutoTokenizer`` from a local directory."""

    backend = "hf"

    def __init__(
        self,
        model_dir: str | Path,
        spec: EngineSpec,
        tokenizer_dir: str | Path | None = None,
        progress: bool = True,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec = spec
        self.batch_size = spec.batch_size
        self.progress = progress
        self.device = resolve_device(spec.device)
        self.dtype = resolve_dtype(spec.dtype, self.device)
        if spec.cpu_threads and self.device.type == "cpu":
            torch.set_num_threads(spec.cpu_threads)
        tok_dir = Path(tokenizer_dir or model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_dir, local_files_only=True, dtype=self.dtype
        ).to(self.device)
        self.model.eval()
        gen_cfg = getattr(self.model, "generation_config", None)
        self.eos_ids = eos_token_ids(self.tokenizer, gen_cfg)
        self.end_of_turn = end_of_turn_id(self.tokenizer, gen_cfg)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_ids[0]
        self.max_len = spec.max_model_len or int(
            getattr(self.model.config, "max_position_embeddings", 0) or 1 << 20
        )
        fp = model_fingerprint(model_dir)
        tok_part = f"+tok@{model_fingerprint(tok_dir)}" if tokenizer_dir else ""
        self.model_id = f"{spec.model}@{fp}{tok_part}:{str(self.dtype).removeprefix('torch.')}"

    # ---------------------------------------------------------------- generate
    def generate(self, requests: Sequence[ChatRequest]) -> list[list[Generation] | Failed]:
        rows: list[_Row] = []
        failed: dict[int, Failed] = {}
        for i, req in enumerate(requests):
            prompt = encode_chat(self.tokenizer, req.messages, req.tools, req.chat_template_kwargs)
            too_long = self.too_long(len(prompt) + 1)
            if too_long:
                failed[i] = too_long
                continue
            if req.params.greedy:  # n greedy samples are identical: decode once
                rows.append(_Row(i, prompt, req.params, None))
            else:
                rows.extend(
                    _Row(i, prompt, req.params, _row_seed(req, k)) for k in range(req.params.n)
                )
        done: list[Generation | None] = [None] * len(rows)
        order = sorted(range(len(rows)), key=lambda r: len(rows[r].prompt))
        with self._bar(len(rows), "hf generate") as bar:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                for r, gen in zip(idx, self._decode([rows[r] for r in idx]), strict=True):
                    done[r] = gen
                bar.update(len(idx))
        out: list[list[Generation] | Failed] = [failed.get(i, []) for i in range(len(requests))]
        for row, gen in zip(rows, done, strict=True):
            assert gen is not None
            gens = out[row.req]
            assert isinstance(gens, list)
            gens.append(gen)
        for i, req in enumerate(requests):
            gens = out[i]
            if isinstance(gens, list) and req.params.greedy and req.params.n > 1:
                out[i] = [copy.deepcopy(gens[0]) for _ in range(req.params.n)]
        return out

    @torch.inference_mode()
    def _decode(self, rows: list[_Row]) -> list[Generation]:
        dev = self.device
        n = len(rows)
        width = max(len(r.prompt) for r in rows)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((n, width), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, width - len(r.prompt) :] = torch.tensor(r.prompt, dtype=torch.long)
            attn[b, width - len(r.prompt) :] = 1
        ids, attn = ids.to(dev), attn.to(dev)
        # Left padding: positions count real tokens only, so each row sees the positions
        # it would see alone.
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        limits = [min(r.params.max_tokens, self.max_len - len(r.prompt)) for r in rows]
        gens = [
            torch.Generator(device="cpu").manual_seed(r.seed) if r.seed is not None else None
            for r in rows
        ]
        want_lp = any(r.params.logprobs for r in rows)
        eos = set(self.eos_ids)
        out_ids: list[list[int]] = [[] for _ in rows]
        out_lp: list[list[float]] = [[] for _ in rows]
        finished = [lim <= 0 for lim in limits]
        reasons = ["length"] * n
        cut: list[int | None] = [None] * n  # character offset of a stop string

        res = self.model(
            input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1
        )
        past = res.past_key_values
        next_pos = attn.sum(-1, keepdim=True)
        logits = res.logits[:, -1, :].float()
        for _step in range(max(limits, default=0)):
            logp = torch.log_softmax(logits, dim=-1) if want_lp else None
            greedy_tok = logits.argmax(-1).tolist()
            step_tok = [self.pad_id] * n
            for b, r in enumerate(rows):
                if finished[b]:
                    continue
                tok = (
                    greedy_tok[b] if gens[b] is None else self._sample(logits[b], r.params, gens[b])
                )
                step_tok[b] = tok
                out_ids[b].append(tok)
                if logp is not None:
                    out_lp[b].append(float(logp[b, tok]))
                if tok in eos:
                    finished[b], reasons[b] = True, "stop"
                elif r.params.stop:
                    at = first_stop(self._text(out_ids[b]), r.params.stop)
                    if at is not None:
                        finished[b], reasons[b], cut[b] = True, "stop", at
                if not finished[b] and len(out_ids[b]) >= limits[b]:
                    finished[b] = True
            if all(finished):
                break
            attn = torch.cat([attn, attn.new_ones((n, 1))], dim=-1)
            res = self.model(
                input_ids=torch.tensor(step_tok, device=dev).unsqueeze(-1),
                attention_mask=attn,
                position_ids=next_pos,
                past_key_values=past,
                use_cache=True,
            )
            past = res.past_key_values
            next_pos = next_pos + 1
            logits = res.logits[:, -1, :].float()

        results = []
        for b, r in enumerate(rows):
            text = self._text(out_ids[b])
            if cut[b] is not None:
                text = text[: cut[b]]
            results.append(
                Generation(
                    text=text,
                    token_ids=out_ids[b],
                    logprobs=out_lp[b] if r.params.logprobs else None,
                    finish_reason=reasons[b],
                )
            )
        return results

    @staticmethod
    def _sample(logits: torch.Tensor, params: SamplingParams, gen: torch.Generator) -> int:
        probs = torch.softmax(logits.cpu() / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < params.top_p  # always keeps the top token
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        return int(torch.multinomial(probs, 1, generator=gen))

    def _text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # ---------------------------------------------------------------- score / choose
    def score(self, requests: Sequence[ScoreRequest]) -> list[Score | Failed]:
        pairs, owners = [], []
        out: list[Score | Failed | None] = [None] * len(requests)
        for i, req in enumerate(requests):
            prompt = encode_chat(self.tokenizer, req.messages, req.tools, req.chat_template_kwargs)
            comp = encode_text(self.tokenizer, req.completion)
            out[i] = self.too_long(len(prompt) + len(comp))
            if out[i] is None:
                pairs.append((prompt, comp))
                owners.append(i)
        for i, lp, (_, c) in zip(owners, self.score_ids(pairs), pairs, strict=True):
            out[i] = Score(token_logprobs=lp, token_ids=c)
        return [r for r in out if r is not None]

    def choose(self, requests: Sequence[ChoiceRequest]) -> list[str | Failed]:
        pairs, owners = [], []
        out: list[str | Failed | None] = [None] * len(requests)
        for i, req in enumerate(requests):
            prompt = encode_chat(self.tokenizer, req.messages, req.tools, req.chat_template_kwargs)
            comps = [encode_text(self.tokenizer, o) + [self.end_of_turn] for o in req.options]
            out[i] = self.too_long(len(prompt) + max(len(c) for c in comps))
            if out[i] is None:
                pairs += [(prompt, c) for c in comps]
                owners += [i] * len(comps)
        per_req: dict[int, list[list[float]]] = {}
        for i, lp in zip(owners, self.score_ids(pairs), strict=True):
            per_req.setdefault(i, []).append(lp)
        for i, ops in per_req.items():
            out[i] = requests[i].options[best_option(ops, self.spec.choice_score)]
        return [r for r in out if r is not None]

    def score_ids(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[list[float]]:
        """Log-prob of every completion token given prompt + preceding completion tokens."""
        out: list[list[float] | None] = [None] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda j: len(pairs[j][0]) + len(pairs[j][1]))
        with self._bar(len(pairs), "hf score") as bar:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                for j, lp in zip(idx, self._score_batch([pairs[j] for j in idx]), strict=True):
                    out[j] = lp
                bar.update(len(idx))
        return [lp if lp is not None else [] for lp in out]

    @torch.inference_mode()
    def _score_batch(self, pairs: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        if all(not c for _, c in pairs):
            return [[] for _ in pairs]
        for p, _ in pairs:
            if not p:
                raise EngineError("cannot score a completion after an empty prompt")
        n = len(pairs)
        width = max(len(p) + len(c) for p, c in pairs)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((n, width), dtype=torch.long)
        for b, (p, c) in enumerate(pairs):
            seq = p + c
            ids[b, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            attn[b, : len(seq)] = 1
        # Only positions from the shortest prompt's last token on can predict a completion.
        first = min(len(p) for p, _ in pairs) - 1
        res = self.model(
            input_ids=ids.to(self.device),
            attention_mask=attn.to(self.device),
            logits_to_keep=width - first,
        )
        logp = torch.log_softmax(res.logits.float(), dim=-1)  # position t -> index t - first
        out = []
        for b, (p, c) in enumerate(pairs):
            if not c:
                out.append([])
                continue
            rows = torch.arange(len(p) - 1, len(p) + len(c) - 1, device=logp.device) - first
            tgt = torch.tensor(c, device=logp.device)
            out.append(logp[b, rows, tgt].tolist())
        return out

    # ---------------------------------------------------------------- helpers
    def too_long(self, n: int) -> Failed | None:
        """A :class:`Failed` when ``n`` tokens exceed the model length, else None."""
        if n <= self.max_len:
            return None
        return too_long_failure(
            n, self.max_len, "engines.<role>.max_model_len / the model's max_position_embeddings"
        )

    def _bar(self, total: int, desc: str) -> tqdm:
        return tqdm(
            total=total,
            desc=desc,
            unit="seq",
            disable=not self.progress or total <= self.batch_size,
        )
