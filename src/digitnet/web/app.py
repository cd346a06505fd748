"""The web app: a drawing page, a model page and a JSON API over one loaded Predictor.

Nothing a client sends names a file: uploads are decoded in memory, and the only files served
are the page assets and a fixed list of plot images from the run folder given at start-up.
"""

from __future__ import annotations

import dataclasses
import os
from importlib import resources
from typing import Any

import numpy as np

from ..extras import require

require("web", "the web app")

from fastapi import FastAPI, HTTPException, Request  # noqa: E402
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402
from starlette.datastructures import UploadFile  # noqa: E402
from starlette.types import Message  # noqa: E402

from ..errors import DigitnetError, ImageError  # noqa: E402
from ..predict import Predictor  # noqa: E402
from ..preprocess import open_image, prepare_image  # noqa: E402
from ..runs import Run  # noqa: E402

MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # a phone photo fits; anything larger is refused (413)
MAX_UPLOAD_PIXELS = 25_000_000  # checked from the header, before decoding
PLOT_NAMES = ("training_curves", "confusion_matrix", "confident_mistakes", "predictions_test",
              "samples_train")


class PixelsRequest(BaseModel):
    """A digit as numbers: 28 rows of 28, or 784 in row order, 0 = background, 255 = ink."""

    pixels: list[list[float]] | list[float] = Field(
        description="28x28 nested or 784 flat values in 0..255 (0 = background, 255 = ink)")
    preprocess: bool = Field(
        default=True, description="crop, scale and centre the ink like MNIST before predicting")


class PredictResponse(BaseModel):
    digit: int = Field(description="the most probable digit")
    probabilities: list[float] = Field(description="10 probabilities, digits 0..9, sum 1")
    image: list[list[int]] = Field(description="the 28x28 image the network saw, 0..255")
    notes: list[str] = Field(description="why the answer may be unreliable (empty if none)")


# The body is read by hand (one endpoint, two content types), so describe both for /docs.
_PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "PNG, JPEG, ... of one digit"}}}},
    "application/json": {"schema": PixelsRequest.model_json_schema()},
}}}


def _page(name: str) -> str:
    return resources.files("digitnet.web").joinpath("static", name).read_text()


def _size_limited(request: Request, max_bytes: int) -> Request:
    """`request`, refused (413) from its Content-Length if that is over `max_bytes`, and else
    as soon as more than `max_bytes` of its body have arrived (a chunked upload has none)."""
    too_large = HTTPException(413, f"the request is over {MAX_UPLOAD_BYTES:,} bytes")
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
    if array.shape not in ((28, 28), (784,)):
        raise ImageError(f"pixels must be 28x28 or 784 numbers, got shape {list(array.shape)}")
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 255:
        raise ImageError("pixel values must be numbers from 0 to 255")
    return array.reshape(28, 28)


def create_app(predictor: Predictor, run: Run | None = None) -> FastAPI:
    """The ASGI app serving `predictor`. The run it came from (optional) gives the model page
    its metrics, history and plots; without one, the model file's own results are shown."""
    app = FastAPI(title="digitnet", version="1",
                  description="Handwritten-digit recognition with a network trained on MNIST.")
    plots = run.folder / "plots" if run and run.folder else None
    info = {"config": predictor.config.to_dict(),
            "metrics": run.metrics if run else predictor.results,
            "history": [dataclasses.asdict(r) for r in run.history] if run else []}

    @app.exception_handler(DigitnetError)
    async def user_input_error(request: Request, exc: DigitnetError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    def answer(pixels: np.ndarray, notes: tuple[str, ...] = ()) -> PredictResponse:
        [prediction] = predictor.predict(pixels[None], notes=[notes])
        return PredictResponse(digit=prediction.digit,
                               probabilities=list(prediction.probabilities),
                               image=pixels.astype(int).tolist(), notes=list(prediction.notes))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def draw_page() -> str:
        return _page("index.html")

    @app.get("/model", response_class=HTMLResponse, include_in_schema=False)
    def model_page() -> str:
        return _page("model.html")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
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

    @app.post("/api/predict", response_model=PredictResponse, openapi_extra=_PREDICT_BODY,
              responses={413: {"description": "upload too large"},
                         415: {"description": "neither multipart nor JSON"},
                         422: {"description": "not an image, no digit found, bad pixels"}})
    async def predict(request: Request) -> PredictResponse:
        """Classify a digit: a multipart upload in the field `file` (PNG, JPEG, ...) or a
        JSON body {"pixels": 28x28 or 784 numbers 0..255, "preprocess": true}."""
        # the image plus room for the multipart framing
        request = _size_limited(request, MAX_UPLOAD_BYTES + 64 * 1024)
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=4)
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise HTTPException(422, "send the image in the multipart field 'file'")
            content = await upload.read(MAX_UPLOAD_BYTES + 1)
            if len(content) > MAX_UPLOAD_BYTES:
                raise HTTPException(413, f"the image is over {MAX_UPLOAD_BYTES:,} bytes")
            prepared = prepare_image(open_image(content, max_pixels=MAX_UPLOAD_PIXELS))
            return answer(prepared.pixels, prepared.notes)
        if kind.startswith("application/json"):
            try:
                body = PixelsRequest.model_validate_json(await request.body())
            except ValueError as exc:
                raise HTTPException(422, f"bad JSON body: {exc}".splitlines()[0]) from None
            pixels = _pixels_array(body)
            if body.preprocess:
                prepared = prepare_image(pixels / 255.0)
                return answer(prepared.pixels, prepared.notes)
            return answer(np.round(pixels).astype(np.uint8))
        raise HTTPException(415, "send multipart/form-data with a 'file', or JSON with 'pixels'")

    return app


# `digitnet serve --workers N` names the run folder here for its worker processes.
RUN_FOR_WORKERS = "DIGITNET_SERVE_RUN"


def app_for_worker() -> FastAPI:
    """The app of one `digitnet serve --workers N` worker process (an ASGI app factory)."""
    from ..runs import load_run

    run = load_run(os.environ[RUN_FOR_WORKERS])
    return create_app(run.predictor, run)
