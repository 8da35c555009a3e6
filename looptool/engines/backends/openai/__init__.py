"""The `openai` backend: engine, scoring routes, wire mapping, HTTP transport, served policy."""
