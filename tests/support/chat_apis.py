"""A local HTTP server speaking the request formats of Telegram's Bot API (``sendMessage``), a
Slack/Discord incoming webhook and a generic JSON webhook: the real ones cannot be reached from
here. It checks each request as the real API would (token in the path, the fields each needs),
records what was accepted, and can be told to answer 429 or 500 for the next requests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class ChatApis:
    token: str
    chat_id: str = "-100123456"
    telegram: list[Received] = field(default_factory=list)
    slack: list[Received] = field(default_factory=list)
    webhook: list[Received] = field(default_factory=list)
    # Answers to give before accepting again: ("429", seconds) or ("500", 0), in order.
    refusals: list[tuple[str, int]] = field(default_factory=list)
    refused: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/sendMessage", self._telegram)
        app.router.add_post("/slack/hook", self._slack)
        app.router.add_post("/hook", self._webhook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _refusal(self) -> tuple[str, int] | None:
        if self.refusals:
            self.refused += 1
            return self.refusals.pop(0)
        return None

    async def _telegram(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        body = await request.json()
        if not body.get("text") or str(body.get("chat_id")) != self.chat_id:
            return web.json_response(
                {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}, status=400
            )
        if len(body["text"]) > 4096:
            return web.json_response(
                {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"},
                status=400,
            )
        refusal = self._refusal()
        if refusal is not None and refusal[0] == "429":
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {refusal[1]}",
                    "parameters": {"retry_after": refusal[1]},
                },
                status=429,
            )
        if refusal is not None:
            return web.json_response({"ok": False, "error_code": 500, "description": "Internal"}, status=500)
        self.telegram.append(Received(request.path, body, dict(request.headers)))
        message = {"message_id": len(self.telegram), "chat": {"id": int(self.chat_id)}, "text": body["text"]}
        return web.json_response({"ok": True, "result": message})

    async def _slack(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body.get("text"), str) or not body["text"]:
            return web.Response(status=400, text="no_text")
        self.slack.append(Received(request.path, body, dict(request.headers)))
        return web.Response(text="ok")

    async def _webhook(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.webhook.append(Received(request.path, body, dict(request.headers)))
        return web.Response(status=204)

    def telegram_lines(self) -> list[str]:
        return [line for r in self.telegram for line in r.body["text"].split("\n")]
