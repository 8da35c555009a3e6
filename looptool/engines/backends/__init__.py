"""One module per engine backend: hf, vllm (+ its CPU helper), openai (a package), template."""
