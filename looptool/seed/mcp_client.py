"""List a local MCP server's tools over stdio with the official ``mcp`` SDK.

`looptool seed import --mcp "CMD ARGS"` starts ``CMD ARGS`` as a stdio MCP server,
initializes a session, pages through ``tools/list`` and returns the result in the MCP
JSON shape ``{"tools": [...]}`` that :mod:`looptool.seed.importers.mcp` reads (the same
shape ``--save`` writes for ``seed.apis.imports``). The whole exchange runs under one
timeout; a server that cannot start, exits, answers an error or does not answer in time
is an :class:`McpError` with one line (the server's last stderr line included), and the
server process is stopped either way.
"""

from __future__ import annotations

import shlex
import tempfile
from typing import Any

MAX_PAGES = 1000  # a server whose cursor never ends


class McpError(RuntimeError):
    """The server could not be listed; the message is one line."""


def _last_line(fh) -> str:
    try:
        fh.seek(0)
        lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines()]
    except (OSError, ValueError):
        return ""
    lines = [ln for ln in lines if ln]
    return lines[-1][:300] if lines else ""


def _first(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


async def _list(command: str, args: list[str], errlog, timeout: float) -> dict[str, Any]:
    import anyio
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp_types import PaginatedRequestParams

    params = StdioServerParameters(command=command, args=args)
    tools: list[dict] = []
    with anyio.fail_after(timeout):
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                cursor = None
                for _ in range(MAX_PAGES):
                    page = await session.list_tools(
                        params=PaginatedRequestParams(cursor=cursor) if cursor else None
                    )
                    dumped = page.model_dump(mode="json", by_alias=True, exclude_none=True)
                    tools += dumped.get("tools", [])
                    cursor = page.next_cursor
                    if not cursor:
                        break
    return {"tools": tools}


def list_server_tools(command_line: str, timeout: float = 30.0) -> dict[str, Any]:
    """``{"tools": [...]}`` of the stdio MCP server started by ``command_line``."""
    import anyio

    try:
        argv = shlex.split(command_line)
    except ValueError as exc:
        raise McpError(f"--mcp {command_line!r}: cannot split the command line ({exc})") from None
    if not argv:
        raise McpError("--mcp: give the server's command line, e.g. --mcp 'python server.py'")
    try:
        import mcp.client.stdio  # noqa: F401
    except ImportError as exc:
        raise McpError(
            f"--mcp needs the official MCP SDK: pip install 'looptool[mcp]' ({exc})"
        ) from None
    shown = f"MCP server {command_line!r}"
    with tempfile.TemporaryFile() as errlog:
        try:
            return anyio.run(_list, argv[0], argv[1:], errlog, timeout)
        except TimeoutError:
            why = f"no tools/list answer within {timeout:g} s"
        except (Exception, BaseExceptionGroup) as exc:  # spawn errors, closed pipes, RPC errors
            why = _first(exc)
            if isinstance(exc, FileNotFoundError) or "No such file" in why:
                why = f"cannot start {argv[0]!r}: {why}"
            elif "Connection closed" in why:
                why = f"the server exited or closed stdout before answering ({why})"
        tail = _last_line(errlog)
        raise McpError(f"{shown}: {why}" + (f" (server stderr: {tail})" if tail else ""))
