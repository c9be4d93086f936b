"""`afinar serve MODEL_URI`: a registered (or catalog) model behind an OpenAI-compatible HTTP API.

Any app that talks to OpenAI switches by changing its base URL to `http://HOST:PORT/v1`.
Endpoints: `GET /v1/models`, `POST /v1/chat/completions` (whole or streamed as server-sent
events ending with `data: [DONE]`). Bad requests get OpenAI's error shape
(`{"error": {"message", "type", "param", "code"}}`) with a 4xx status; one generation runs at a
time (the engine's lock), so concurrent requests queue instead of corrupting each other.

MODEL_URI is `models:/<name>@champion`, `models:/<name>/<version>`, `runs:/<id>/model`, a folder
holding an MLflow model or a transformers model, or a catalog entry (`embedded`, `smollm2_135m`).
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from tasks.chat_format import prompt_ids
from tasks.chat_model import ChatEngine, ChatReply
from tasks.config import CONF_DIR, compose, section_as
from tasks.config.model import ModelConfig
from tasks.model_loading import ModelNotFoundError

MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat completion request a local model honours; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=1, description="one choice per request")
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None


class OpenAIError(Exception):
    """A request the server refuses, reported in OpenAI's error shape."""

    def __init__(self, status: int, message: str, type_: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


def _validation_error(exc: RequestValidationError) -> OpenAIError:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", []) if p != "body"]
    where = ".".join(loc) or None
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', []) if p != 'body') or 'body'}: {e.get('msg')}" for e in exc.errors()
    )
    return OpenAIError(400, f"invalid request: {detail}", "invalid_request_error", where, "invalid_request")


def create_app(engine: ChatEngine, model_id: str, default_max_tokens: int = 256) -> FastAPI:
    """The OpenAI-compatible app for one loaded engine, served under the id `model_id`."""
    app = FastAPI(title="afinar", description=f"OpenAI-compatible API for {model_id}")
    created = int(time.time())
    context_length = int(getattr(engine.model.config, "max_position_embeddings", 0) or 0)

    @app.exception_handler(OpenAIError)
    async def _openai_error(_: Request, exc: OpenAIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc).response()

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return OpenAIError(exc.status_code, str(exc.detail), kind).response()

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        return OpenAIError(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error").response()

    def model_not_found(name: str) -> OpenAIError:
        message = f"The model '{name}' does not exist; this server serves '{model_id}'"
        return OpenAIError(404, message, "invalid_request_error", "model", "model_not_found")

    def model_card() -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": created, "owned_by": "afinar"}

    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name:path}")
    def get_model(name: str) -> dict[str, Any]:
        if name != model_id:
            raise model_not_found(name)
        return model_card()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": model_id}

    @app.post("/v1/chat/completions", response_model=None)
    def chat_completions(request: ChatCompletionRequest) -> dict[str, Any] | StreamingResponse:
        if request.model != model_id:
            raise model_not_found(request.model)
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in request.messages
        ]
        max_tokens = request.max_completion_tokens or request.max_tokens or default_max_tokens
        prompt_tokens = len(prompt_ids(engine.tokenizer, messages))
        if context_length and prompt_tokens + max_tokens > context_length:
            raise OpenAIError(
                400,
                f"This model's maximum context length is {context_length} tokens; the messages take "
                f"{prompt_tokens} and max_tokens asks for {max_tokens}. Shorten the messages or max_tokens.",
                "invalid_request_error",
                "messages",
                "context_length_exceeded",
            )
        options = {
            "max_tokens": max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
            "stop": [request.stop] if isinstance(request.stop, str) else list(request.stop or []),
        }
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if request.stream:
            usage = bool(request.stream_options and request.stream_options.include_usage)
            events = _stream_events(engine, messages, options, completion_id, model_id, usage)
            return StreamingResponse(
                events, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            )
        reply = engine.complete(messages, **options)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": reply.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage(reply),
        }

    return app


def _usage(reply: ChatReply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _stream_events(
    engine: ChatEngine,
    messages: list[dict[str, str]],
    options: dict[str, Any],
    completion_id: str,
    model_id: str,
    include_usage: bool,
) -> Iterator[str]:
    """Server-sent events in OpenAI's chunk format; an error mid-stream is sent as an `error` event."""
    created = int(time.time())

    def chunk(delta: dict[str, str], finish: str | None = None, usage: dict[str, int] | None = None) -> str:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
            if delta or finish
            else [],
        }
        if usage is not None:
            body["usage"] = usage
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        for piece in engine.stream(messages, **options):
            if isinstance(piece, ChatReply):
                yield chunk({}, finish=piece.finish_reason)
                if include_usage:
                    yield chunk({}, usage=_usage(piece))
            else:
                yield chunk({"content": piece})
    except Exception as exc:
        error = {
            "message": f"generation failed: {type(exc).__name__}: {exc}",
            "type": "server_error",
            "param": None,
            "code": None,
        }
        yield f"data: {json.dumps({'error': error})}\n\n"
    yield "data: [DONE]\n\n"


def catalog_names() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


def load_engine(model_uri: str, cache_dir: str | Path | None = None) -> ChatEngine:
    """Load what MODEL_URI names: an MLflow model, a local model folder, or a catalog entry."""
    path = Path(model_uri)
    if model_uri.startswith(MLFLOW_SCHEMES) or (path / "MLmodel").is_file():
        import mlflow

        from tasks import tracking

        tracking.use_store(tracking.tracking_uri(compose()))
        model = mlflow.pyfunc.load_model(model_uri)
        return model.unwrap_python_model().engine
    cfg = compose()
    if path.is_dir() and (path / "config.json").is_file():
        model_cfg = ModelConfig(name=path.name, source="path", path=str(path.resolve()))
    elif model_uri == "embedded":
        model_cfg = section_as(cfg.model, ModelConfig)
    elif model_uri in catalog_names():
        model_cfg = section_as(compose([f"model={model_uri}"]).model, ModelConfig)
    else:
        raise ModelNotFoundError(
            f"'{model_uri}' is neither an MLflow model URI (models:/NAME@ALIAS, runs:/ID/model), a model folder, "
            f"nor a catalog entry ({', '.join(['embedded', *catalog_names()])})"
        )
    return ChatEngine.from_catalog(model_cfg, Path(cache_dir or cfg.paths.cache))


def _free_socket(host: str, port: int | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port or 0))
    return sock


@contextmanager
def serving(
    model: str | ChatEngine,
    port: int | None = None,
    host: str = "127.0.0.1",
    cache_dir: str | Path | None = None,
    model_id: str | None = None,
) -> Iterator[str]:
    """Serve in a background thread (a free port unless given); yields the base URL `http://host:port/v1`.

    For tests and local tools: `with serving("embedded") as base_url: OpenAI(base_url=base_url, api_key="x")`.
    The served model id is `model_id`, else the URI given (e.g. "embedded").
    """
    engine = model if isinstance(model, ChatEngine) else load_engine(model, cache_dir)
    served_id = model_id or (model if isinstance(model, str) else engine.name)
    with app_in_thread(create_app(engine, served_id), host, port) as base_url:
        yield base_url


@contextmanager
def app_in_thread(app: Any, host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a background thread (a free port unless given); yields `http://host:port/v1`."""
    sock = _free_socket(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="afinar-serve", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server thread on {host}:{sock.getsockname()[1]} exited before it started")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def main(argv: list[str]) -> int:
    """`afinar serve MODEL_URI [--host H] [--port P]`."""
    parser = argparse.ArgumentParser(prog="afinar serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_uri", help="models:/NAME@champion, models:/NAME/VERSION, a folder, or 'embedded'")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model-id", default=None, help="the id clients send as `model` (default: MODEL_URI)")
    parser.add_argument("--cache", default=None, help="model cache folder (default: paths.cache)")
    parser.add_argument("--max-tokens", type=int, default=256, help="reply length when a request sets none")
    args = parser.parse_args(argv)
    engine = load_engine(args.model_uri, args.cache)
    model_id = args.model_id or args.model_uri
    print(f"afinar serve: {model_id} at http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(create_app(engine, model_id, args.max_tokens), host=args.host, port=args.port, log_level="info")
    return 0
