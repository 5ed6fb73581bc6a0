"""The console's web server: aiohttp on its own thread and asyncio loop (no ROS import).

The ROS side and the web side share only thread-safe objects: :class:`ConsoleState` and
:class:`FrameStore` (the node's callbacks write, viewers read) and :class:`Backend` (service
calls and the task publisher; both return at once). So rclpy callbacks never wait on a browser
and the web side never waits on the executor: a service call returns a future that the
executor completes.

One WebSocket per viewer (``/ws``) carries JSON state at ``state_rate_hz`` and JPEG frames at
the viewer's own rate (``?fps=``, default ``frame_rate_hz``, at most ``max_frame_rate_hz``),
each frame the newest of its camera: a viewer that cannot keep up (its socket's write buffer
over ``MAX_WRITE_BUFFER``, or a send that blocks) skips frames, never queues them. Frames are
encoded only when a viewer is due one, once per frame for all viewers, on a small thread pool.
Binary frame message: ``u8 camera index, f64 capture stamp (s), u32 frame seq`` (little
endian), then the JPEG bytes.

HTTP: ``/`` the page, ``/static/<file>`` its script and style, ``/api/config``,
``/api/state``, ``POST /api/command/<name>`` (JSON answer: success, message, duration_ms),
``POST /api/task`` (``{"task": "..."}``). Access rules: ``core/access.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from .core.access import COOKIE, AccessPolicy, RequestInfo
from .core.commands import COMMANDS, TASK_KEY, Command, CommandResult, validate_task
from .core.frames import FrameStore
from .core.rate import RateLimiter, clamp_rate
from .core.state import ConsoleState, Viewer

FRAME_HEADER = struct.Struct("<BdI")
MAX_WRITE_BUFFER = 512 * 1024
"""A viewer whose socket buffers more than this (bytes) skips frames until it drains."""

STATIC_FILES = {"console.js": "text/javascript", "console.css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


class Backend(Protocol):
    """What the web side asks of the ROS side; every method returns at once (thread-safe)."""

    def call(self, command: Command) -> concurrent.futures.Future:
        """Call the command's service; the future yields ``(success, message)``."""
        ...

    def publish_task(self, text: str) -> None:
        """Publish ``text`` on ``ramp/task`` (latched)."""
        ...


@dataclass
class ServerConfig:
    """Where to listen and how fast to feed viewers (rates in Hz)."""

    host: str = "127.0.0.1"
    port: int = 8088
    port_tries: int = 10
    token: str = ""
    frame_rate_hz: float = 10.0
    max_frame_rate_hz: float = 30.0
    state_rate_hz: float = 10.0


@dataclass
class ViewerStats:
    """Counters of one connected viewer."""

    frames_sent: int = 0
    frames_skipped: int = 0
    states_sent: int = 0


class ConsoleServer:
    """Serves the console page and its WebSocket on a thread of its own."""

    def __init__(
        self,
        state: ConsoleState,
        frames: FrameStore,
        backend: Backend,
        web_dir: Path,
        config: ServerConfig,
    ) -> None:
        self.state = state
        self.frames = frames
        self.backend = backend
        self.web_dir = Path(web_dir)
        self.config = config
        self.policy = AccessPolicy(config.token, config.host)  # refuses a bad bind first
        self.url = ""
        self._viewers: dict[int, ViewerStats] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="console-jpeg")
        self.frames_sent = 0
        self.frames_skipped = 0
        self.commands_called = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout_s: float = 10.0) -> str:
        """Start the web thread and bind; returns the URL. Raises OSError if no port is free."""
        self._thread = threading.Thread(target=self._run, name="operator-console-web", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"web server did not start within {timeout_s} s")
        if self._error is not None:
            raise self._error
        return self.url

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close every viewer, stop the server and its thread (safe twice)."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                future.result(timeout_s)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def viewers(self) -> int:
        with self._lock:
            return len(self._viewers)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _startup(self) -> None:
        app = web.Application(middlewares=[self._access_middleware])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/config", self._api_config)
        app.router.add_get("/api/state", self._api_state)
        app.router.add_post("/api/command/{name}", self._api_command)
        app.router.add_post("/api/task", self._api_task)
        app.router.add_get("/ws", self._websocket)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        cfg = self.config
        tries = 1 if cfg.port == 0 else max(1, cfg.port_tries)
        last: OSError | None = None
        for port in range(cfg.port, cfg.port + tries):
            site = web.TCPSite(runner, cfg.host, port)
            try:
                await site.start()
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    await runner.cleanup()
                    raise OSError(exc.errno, f"cannot listen on {cfg.host}:{port}: {exc}") from None
                last = exc
                continue
            host, bound = runner.addresses[-1][:2]
            shown = f"[{host}]" if ":" in host else host
            self.url = f"http://{shown}:{bound}/"
            self._runner = runner
            return
        await runner.cleanup()
        raise OSError(
            errno.EADDRINUSE,
            f"ports {cfg.port}-{cfg.port + tries - 1} on {cfg.host} are all in use ({last})",
        )

    async def _shutdown(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ access

    @web.middleware
    async def _access_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        info = RequestInfo(
            method=request.method,
            host=request.headers.get("Host", ""),
            origin=request.headers.get("Origin", ""),
            content_type=request.headers.get("Content-Type", ""),
            query_token=request.query.get("token", ""),
            bearer_token=auth[7:] if auth.lower().startswith("bearer ") else "",
            header_token=request.headers.get("X-Ramp-Token", ""),
            cookie_token=request.cookies.get(COOKIE, ""),
            websocket=request.path == "/ws",
        )
        decision = self.policy.check(info)
        if not decision.allowed:
            return web.json_response(
                {"success": False, "message": decision.reason}, status=decision.status
            )
        response = await handler(request)
        if not isinstance(response, web.WebSocketResponse):
            response.headers.update(SECURITY_HEADERS)
        return response

    # ------------------------------------------------------------------ HTTP

    async def _index(self, request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(self.web_dir / "index.html")
        response.content_type = "text/html"
        token = request.query.get("token", "")
        if token and self.policy.token:  # valid (checked by the middleware): keep it as cookie
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
        return response

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        response = web.FileResponse(self.web_dir / name)
        response.content_type = STATIC_FILES[name]
        return response

    async def _api_config(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response(self.client_config())

    def client_config(self) -> dict[str, Any]:
        """What the page needs to build itself: cameras, joints, controls and their keys."""
        return {
            "cameras": self.frames.cameras,
            "joint_names": self.state.joint_names,
            "commands": [c.as_json() for c in COMMANDS.values()],
            "task_key": TASK_KEY,
            "frame_rate_hz": self.config.frame_rate_hz,
            "max_frame_rate_hz": self.config.max_frame_rate_hz,
            "state_rate_hz": self.config.state_rate_hz,
        }

    async def _api_state(self, _request: web.Request) -> web.StreamResponse:
        snapshot = self.state.snapshot(Viewer(), time.time())
        snapshot["console"] = self.stats()
        return web.json_response(snapshot)

    async def _api_command(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        command = COMMANDS.get(name)
        if command is None:
            return web.json_response(
                {"success": False, "message": f"unknown command {name!r}"}, status=404
            )
        result = await self.run_command(command)
        return web.json_response(result.as_json())

    async def run_command(self, command: Command) -> CommandResult:
        """Call the command's service and wait for its answer (at most its timeout)."""
        started, t0 = time.time(), time.perf_counter()
        self.commands_called += 1
        try:
            future = asyncio.wrap_future(self.backend.call(command))
            success, message = await asyncio.wait_for(future, command.timeout_s)
        except asyncio.TimeoutError:
            success, message = False, f"no answer from {command.service} in {command.timeout_s} s"
        except Exception as exc:  # the page shows why the call failed
            success, message = False, f"{command.service}: {exc}"
        result = CommandResult(
            command.name, bool(success), str(message), (time.perf_counter() - t0) * 1e3, time.time()
        )
        self.state.on_command_result(result, started)
        return result

    async def _api_task(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            text = validate_task(body.get("task") if isinstance(body, dict) else None)
        except ValueError as exc:
            return web.json_response({"success": False, "message": str(exc)}, status=400)
        self.backend.publish_task(text)
        self.state.on_task(text)
        result = CommandResult("task", True, f"task: {text}", 0.0, time.time())
        self.state.on_command_result(result, result.at_s)
        return web.json_response(result.as_json())

    # ------------------------------------------------------------------ WebSocket

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=5.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        rate = clamp_rate(
            request.query.get("fps"), self.config.frame_rate_hz, self.config.max_frame_rate_hz
        )
        stats = ViewerStats()
        with self._lock:
            self._viewers[id(ws)] = stats
            self._sockets.add(ws)
        frames = RateLimiter(rate)
        sender = asyncio.ensure_future(self._send_loop(ws, request, frames, stats))
        try:
            await ws.send_json({"type": "hello", "frame_rate_hz": rate, **self.client_config()})
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    with contextlib.suppress(ValueError, TypeError, AttributeError):
                        data = json.loads(msg.data)
                        if "fps" in data:
                            new = clamp_rate(
                                data["fps"],
                                self.config.frame_rate_hz,
                                self.config.max_frame_rate_hz,
                            )
                            frames.period_s = 1.0 / new
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            with self._lock:
                self._viewers.pop(id(ws), None)
                self._sockets.discard(ws)
        return ws

    async def _send_loop(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        frames: RateLimiter,
        stats: ViewerStats,
    ) -> None:
        loop = asyncio.get_running_loop()
        states = RateLimiter(self.config.state_rate_hz)
        viewer = Viewer()
        sent_seq = dict.fromkeys(self.frames.cameras, 0)
        try:
            while not ws.closed:
                now = time.monotonic()
                wait = min(frames.wait_s(now), states.wait_s(now))
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                if states.take(now):
                    await ws.send_str(json.dumps(self.state.snapshot(viewer, time.time())))
                    stats.states_sent += 1
                if not frames.take(now):
                    continue
                for index, camera in enumerate(self.frames.cameras):
                    seq = self.frames.latest_seq(camera)
                    if seq == sent_seq[camera]:
                        continue
                    transport = request.transport
                    if transport is None or transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                        stats.frames_skipped += 1
                        self.frames_skipped += 1
                        continue
                    frame = await loop.run_in_executor(self._pool, self.frames.encoded, camera)
                    if frame is None or ws.closed:
                        continue
                    if sent_seq[camera]:
                        skipped = max(0, frame.seq - sent_seq[camera] - 1)
                        stats.frames_skipped += skipped
                        self.frames_skipped += skipped
                    sent_seq[camera] = frame.seq
                    await ws.send_bytes(
                        FRAME_HEADER.pack(index, frame.stamp_s, frame.seq) + frame.jpeg
                    )
                    stats.frames_sent += 1
                    self.frames_sent += 1
        except (ConnectionResetError, RuntimeError):
            return  # the viewer went away; nothing on the robot depends on it

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        """Counters for diagnostics: viewers, frames sent/skipped/encoded, encode time."""
        encoded = self.frames.encoded_count
        return {
            "url": self.url,
            "viewers": self.viewers,
            "frames_sent": self.frames_sent,
            "frames_skipped": self.frames_skipped,
            "frames_encoded": encoded,
            "encode_ms_mean": (self.frames.encode_s_total / encoded * 1e3) if encoded else 0.0,
            "encode_errors": self.frames.encode_errors,
            "commands_called": self.commands_called,
        }
