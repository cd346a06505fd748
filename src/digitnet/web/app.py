"""The web app: a drawing page, a model page and a JSON API over one loaded Predictor.

Nothing a client sends names a file: uploads are decoded in memory, and the only files served
are the page assets and a fixed list of plot images from the run folder given at start-up.
Requests must name an allowed host (DNS rebinding), every response carries headers that let
a browser load nothing from elsewhere and no other site frame the pages, and the work of a
prediction runs in one thread of its own per process, never on the event loop, with its
memory bounded by the limits below.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import os
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Annotated, Any

import numpy as np
from PIL import Image

from ..extras import require

require("web", "the web app")

from fastapi import FastAPI, HTTPException, Request  # noqa: E402
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse  # noqa: E402
from fastapi.staticfiles import StaticFiles  # noqa: E402
from pydantic import BaseModel, Field, ValidationError  # noqa: E402
from starlette.datastructures import UploadFile  # noqa: E402
from starlette.middleware.trustedhost import TrustedHostMiddleware  # noqa: E402
from starlette.requests import ClientDisconnect  # noqa: E402
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

from ..errors import DigitnetError, ImageError  # noqa: E402
from ..geometry import IMAGE_PIXELS, SIDE  # noqa: E402
from ..numbers import read_number, scale_box  # noqa: E402
from ..predict import Predictor  # noqa: E402
from ..preprocess import FORMATS, open_image, prepare_image  # noqa: E402
from ..run_folder import PLOT_NAMES  # noqa: E402
from ..runs import Run  # noqa: E402

MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # a phone photo fits; anything larger is refused (413)
# Checked from the header, before decoding: a 12 MP phone photo (4080x3060) fits. The image
# is decoded at a reduced size (open_image's reduce), so no request needs more than ~110 MB.
MAX_UPLOAD_PIXELS = 12_500_000
MAX_JSON_BYTES = 64 * 1024  # 784 numbers take 20 KB even written as 17-digit floats
PREDICT_THREADS = 1  # predictions at once per process: its memory is this x one request's
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # Host header values, port left out
# Pages and API responses may load scripts, styles, images and data from this server only,
# and no other site may frame them.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; object-src 'none'; base-uri 'none'; "
                                 b"form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


# Longer lists are refused while the JSON is validated (after its size was checked).
_Numbers = Annotated[list[float], Field(max_length=IMAGE_PIXELS)]


class PixelsRequest(BaseModel):
    """A digit as numbers: 28 rows of 28, or 784 in row order, 0 = background, 255 = ink."""

    pixels: Annotated[list[_Numbers], Field(max_length=IMAGE_PIXELS)] | _Numbers = Field(
        description="28x28 nested or 784 flat values in 0..255 (0 = background, 255 = ink)")
    preprocess: bool = Field(
        default=True, description="crop, scale and centre the ink like MNIST before predicting")


class PredictResponse(BaseModel):
    digit: int | None = Field(description="the digit read, or null where the image is "
                                          "refused as not a digit")
    refused: str | None = Field(description="why the image is not read as a digit (null when "
                                            "a digit is read)")
    probabilities: list[float] = Field(description="10 probabilities, digits 0..9, sum 1")
    image: list[list[int]] = Field(description="the 28x28 image the network saw, 0..255")
    notes: list[str] = Field(description="why the answer may be unreliable (empty if none)")


class DigitOfNumber(BaseModel):
    digit: int | None = Field(description="the digit read, or null where it is not read")
    confidence: float = Field(description="the network's calibrated top probability")
    box: list[int] = Field(description="[left, top, width, height] in the image's pixels")
    refused: str | None = Field(description="why this digit is not read (null when it is)")
    image: list[list[int]] = Field(description="the 28x28 image the network saw, 0..255")


class NumberResponse(BaseModel):
    number: str | None = Field(description="the digits read, left to right, or null where "
                                           "the image is not read as a number")
    refused: str | None = Field(description="why no number is given (null when one is)")
    digits: list[DigitOfNumber] = Field(description="each digit found, left to right")
    notes: list[str] = Field(description="what was left out, such as specks (empty if none)")


# The body is read by hand (one endpoint, two content types), so describe both for /docs.
_PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "PNG, JPEG, ... of one digit"}}}},
    "application/json": {"schema": PixelsRequest.model_json_schema()},
}}}
_NUMBER_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "PNG, JPEG, ... of digits side by side"}}}},
}}}


def _page(name: str) -> str:
    return resources.files("digitnet.web").joinpath("static", name).read_text()


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response (Starlette has no middleware for it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()),
                                                   *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def _size_limited(request: Request, limit: int, slack: int = 0) -> Request:
    """`request`, refused (413) from its Content-Length if that is over `limit` + `slack`,
    and else as soon as more than that has arrived (a chunked upload has no length)."""
    too_large = HTTPException(413, f"the request is over {limit:,} bytes")
    max_bytes = limit + slack
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise too_large
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > max_bytes:
            raise too_large
        return message

    return Request(request.scope, receive)


def _pixels_array(body: PixelsRequest) -> np.ndarray:
    try:
        array = np.asarray(body.pixels, dtype=np.float64)
    except ValueError:  # rows of different lengths
        raise ImageError("pixels must be 28 rows of 28 numbers, or 784 numbers; the rows "
                         "differ in length") from None
    if array.shape not in ((SIDE, SIDE), (IMAGE_PIXELS,)):
        raise ImageError(f"pixels must be 28x28 or 784 numbers, got shape {list(array.shape)}")
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 255:
        raise ImageError("pixel values must be numbers from 0 to 255")
    return array.reshape(SIDE, SIDE)


def create_app(predictor: Predictor, run: Run | None = None, *,
               allowed_hosts: Sequence[str] = LOOPBACK_HOSTS) -> FastAPI:
    """The ASGI app serving `predictor`. The run it came from (optional) gives the model page
    its metrics, history and plots; without one, the model file's own results are shown.
    Requests whose Host header is not in `allowed_hosts` (Starlette's patterns: a name, an
    address, `*.example.org`, or `*` for any) get 400."""
    pool = ThreadPoolExecutor(PREDICT_THREADS, thread_name_prefix="digitnet-predict")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    # No /docs page: Swagger UI loads its scripts from a CDN. /openapi.json stays.
    app = FastAPI(title="digitnet", version="1", docs_url=None, redoc_url=None,
                  lifespan=lifespan,
                  description="Handwritten-digit recognition with a network trained on MNIST.")
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(SecurityHeaders)  # outermost: the Host check's 400 gets them too
    app.mount("/static", StaticFiles(packages=[("digitnet.web", "static")]), name="static")
    plots = run.folder / "plots" if run and run.folder else None
    info = {"config": predictor.config.to_dict(),
            "metrics": run.metrics if run else predictor.results,
            "calibration": predictor.results.get("calibration"),
            "history": [dataclasses.asdict(r) for r in run.history] if run else []}
    pages = {name: _page(name) for name in ("index.html", "model.html")}

    @app.exception_handler(DigitnetError)
    async def user_input_error(request: Request, exc: DigitnetError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(ClientDisconnect)
    async def client_went_away(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # the body stopped arriving (its deadline closed the connection): nobody reads this
        return JSONResponse(status_code=400, content={"detail": "the request was cut off"})

    async def off_the_loop(work: Callable[[], PredictResponse]) -> PredictResponse:
        return await asyncio.get_running_loop().run_in_executor(pool, work)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def draw_page() -> str:
        return pages["index.html"]

    @app.get("/model", response_class=HTMLResponse, include_in_schema=False)
    async def model_page() -> str:
        return pages["model.html"]

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/model")
    def model_info() -> dict[str, Any]:
        """The model's training configuration, test metrics and training history."""
        available = [n for n in PLOT_NAMES if plots and (plots / f"{n}.png").is_file()]
        return {**info, "plots": [f"/api/plots/{n}.png" for n in available]}

    @app.get("/api/plots/{name}.png", include_in_schema=False)
    def plot(name: str) -> FileResponse:
        if name not in PLOT_NAMES or plots is None or not (plots / f"{name}.png").is_file():
            raise HTTPException(404, "no such plot")
        return FileResponse(plots / f"{name}.png", media_type="image/png")

    async def upload(request: Request) -> bytes:
        """The image file of a multipart request's field `file`, size-checked."""
        # the image plus room for the multipart framing
        request = _size_limited(request, MAX_UPLOAD_BYTES, slack=64 * 1024)
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, "send the image in the multipart field 'file'")
        content = await upload.read(MAX_UPLOAD_BYTES + 1)
        if len(content) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"the image is over {MAX_UPLOAD_BYTES:,} bytes")
        return content

    @app.post("/api/number", response_model=NumberResponse, openapi_extra=_NUMBER_BODY,
              responses={413: {"description": "upload too large"},
                         415: {"description": "not multipart"},
                         422: {"description": "not an image, no ink found"}})
    async def number(request: Request) -> NumberResponse:
        """Read a number: a multipart upload in the field `file` of digits written side by
        side. `number` is null, and `refused` says why, where any digit is not read."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HTTPException(415, "send multipart/form-data with the image in 'file'")
        content = await upload(request)
        return await off_the_loop(lambda: _answer_number(predictor, content))

    @app.post("/api/predict", response_model=PredictResponse, openapi_extra=_PREDICT_BODY,
              responses={413: {"description": "upload too large"},
                         415: {"description": "neither multipart nor JSON"},
                         422: {"description": "not an image, no digit found, bad pixels"}})
    async def predict(request: Request) -> PredictResponse:
        """Classify a digit: a multipart upload in the field `file` (PNG, JPEG, ...) or a
        JSON body {"pixels": 28x28 or 784 numbers 0..255, "preprocess": true}."""
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            content = await upload(request)
            return await off_the_loop(lambda: _answer_image(predictor, content))
        if kind.startswith("application/json"):
            content = await _size_limited(request, MAX_JSON_BYTES).body()
            return await off_the_loop(lambda: _answer_json(predictor, content))
        raise HTTPException(415, "send multipart/form-data with a 'file', or JSON with 'pixels'")

    return app


# The work of a prediction, which runs in the app's thread, off the event loop.

def _answer(predictor: Predictor, pixels: np.ndarray, notes: tuple[str, ...] = (),
            refused: str | None = None) -> PredictResponse:
    [prediction] = predictor.predict(pixels[None], notes=[notes], refused=[refused])
    return PredictResponse(digit=prediction.digit, refused=prediction.refused,
                           probabilities=list(prediction.probabilities),
                           image=pixels.astype(int).tolist(), notes=list(prediction.notes))


def _answer_image(predictor: Predictor, content: bytes) -> PredictResponse:
    prepared = prepare_image(open_image(content, max_pixels=MAX_UPLOAD_PIXELS, reduce=True))
    return _answer(predictor, prepared.pixels, prepared.notes, prepared.refused)


def _answer_number(predictor: Predictor, content: bytes) -> NumberResponse:
    image = open_image(content, max_pixels=MAX_UPLOAD_PIXELS, reduce=True)
    reading = read_number(predictor, image)
    # boxes in the uploaded image's pixels, where it was decoded at a reduced size
    with Image.open(io.BytesIO(content), formats=FORMATS) as header:
        uploaded = header.size
    return NumberResponse(number=reading.number, refused=reading.refused, notes=list(
        reading.notes), digits=[DigitOfNumber(
            digit=d.digit, confidence=d.confidence, refused=d.refused,
            box=list(scale_box(d.box, image.size, uploaded)),
            image=d.pixels.astype(int).tolist()) for d in reading.digits])


def _answer_json(predictor: Predictor, content: bytes) -> PredictResponse:
    try:
        body = PixelsRequest.model_validate_json(content)
    except ValidationError as exc:  # the first error says what is wrong, and where
        first = exc.errors()[0]
        where = f" ({first['loc'][0]})" if first["loc"] else ""
        raise HTTPException(422, f"bad JSON body: {first['msg']}{where}") from None
    pixels = _pixels_array(body)
    if body.preprocess:
        prepared = prepare_image(pixels / 255.0)
        return _answer(predictor, prepared.pixels, prepared.notes, prepared.refused)
    return _answer(predictor, np.round(pixels).astype(np.uint8))


# `digitnet serve --workers N` names the run folder and the allowed hosts (comma-separated)
# here for its worker processes.
RUN_FOR_WORKERS = "DIGITNET_SERVE_RUN"
HOSTS_FOR_WORKERS = "DIGITNET_SERVE_ALLOWED_HOSTS"


def app_for_worker() -> FastAPI:
    """The app of one `digitnet serve --workers N` worker process (an ASGI app factory)."""
    from ..runs import load_run

    run = load_run(os.environ[RUN_FOR_WORKERS])
    return create_app(run.predictor, run,
                      allowed_hosts=os.environ[HOSTS_FOR_WORKERS].split(","))
