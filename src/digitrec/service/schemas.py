"""The shapes of the service's JSON answers, for the OpenAPI document at /openapi.json.

Try: `python -c "from digitrec.service.schemas import RecognitionOut; print(RecognitionOut.model_json_schema())"`.

They describe what `Recognition.to_dict()` and the handlers return; the handlers send plain
dicts (no per-request validation cost), and the fuzz tests check the two agree.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..recognition.results import NOT_A_DIGIT_MARK, Reason


class TopK(BaseModel):
    digit: str
    probability: float = Field(ge=0, le=1)


class DigitOut(BaseModel):
    digit: str = Field(description=f'the most probable digit, or "{NOT_A_DIGIT_MARK}" for ink read as no digit at all')
    confidence: float = Field(ge=0, le=1, description="the most probable digit's probability")
    probabilities: list[float] = Field(description="one probability per class, 0 to 9")
    box: list[int] = Field(
        min_length=4, max_length=4, description="(x0, y0, x1, y1), end-exclusive, in the uploaded image's pixels"
    )
    flagged: bool = Field(description="confidence is under reject_below, or the piece is no digit")
    top_k: list[TopK]
    not_one_digit: float | None = Field(
        ge=0,
        le=1,
        description="the chance that this piece of the image is not "
        "one digit (two touching digits, a fragment), from a model with that "
        "output (the shipped one has it); else null",
    )
    not_digit: float | None = Field(
        ge=0,
        le=1,
        description="the chance that this piece is no digit at all (a letter, a sign, a shape), "
        f'from a model with that output; else null. From the threshold up the piece reads "{NOT_A_DIGIT_MARK}"',
    )
    image: str | None = Field(None, description="with images=true: the 28x28 image the network saw, as a PNG data URL")


class ReadingOut(BaseModel):
    text: str
    probability: float = Field(ge=0, le=1, description="the product of its digits' probabilities")


class ConstrainedOut(BaseModel):
    readings: list[ReadingOut] = Field(description="readings that satisfy the constraints, most probable first")
    share: float = Field(ge=0, le=1, description="the first reading's probability over the sum of theirs")
    ratio: float = Field(
        ge=0, le=1, description="the first reading's probability over that of the best reading of its length"
    )
    unconstrained: str = Field(
        description="the digits read without the constraints (with the digit count they imply, if they imply one)"
    )
    exact: bool = Field(description="false when the search stopped at its bound before it was done")


class RecognitionOut(BaseModel):
    path: str | None = Field(description="the uploaded file's name, when it had one")
    text: str = Field(
        description=f'the number read, digit by digit, "{NOT_A_DIGIT_MARK}" for ink that is no digit; "" when rejected'
    )
    digits: list[DigitOut]
    rejected: bool = Field(description="nothing trustworthy was read: `reason` says why")
    reason: Reason | None = Field(
        description='why the image was rejected: "no ink" (no digit-like ink), "not a digit" (ink read as '
        'no digit; with strict=true, any such piece), "low confidence" (every digit under reject_below), '
        '"no valid reading" (constraints given, and no reading satisfies them surely enough); '
        "null when accepted or when the image could not be read (see error)"
    )
    error: str | None = Field(description="why this image could not be read (batch only; else null)")
    notes: list[str] | None = Field(
        None, description='what to know about how the image was read, e.g. "only the first of its 3 frames was read"'
    )
    constrained: ConstrainedOut | None = Field(
        None, description="read with pattern, checksum or lexicon only: the valid readings and how sure the best is"
    )


class BatchOut(BaseModel):
    count: int
    results: list[RecognitionOut] = Field(description="one per uploaded file, in upload order")


class ModelOut(BaseModel):
    # The Recognizer's info varies with the backend; the documented keys are always there.
    model_config = ConfigDict(extra="allow")
    architecture: str
    backend: str
    precision: str
    file: str = Field(description="the model file's name")
    file_bytes: int
    test_accuracy: float | None = Field(description="measured on the MNIST test set when the model was made")
    digitrec_version: str
    limits: dict[str, Any] = Field(description="the request limits this server enforces")
    checksums: list[str] = Field(description="the names the checksum parameter takes")
    lexicons: list[str] = Field(description="the names the lexicon parameter takes on this server")


class HealthOut(BaseModel):
    status: str = Field(description='"ok", or "degraded" while a recognition process that died starts again')
    model: str


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong and what to do about it")
    errors: list[dict[str, Any]] | None = Field(None, description="422 only: each invalid option")


class ProfileOut(BaseModel):
    profile: str = Field(description="the profile's identifier: keep it, it is what reads and changes the profile")
    issued: bool = Field(description="made by the service (true) or named with the CLI (false)")
    created: str = Field(description="when it was made (ISO 8601)")
    updated: str = Field(description="when its samples last changed (ISO 8601)")
    revision: int = Field(description="raised by every change")
    samples: int
    per_digit: dict[str, int] = Field(description="samples of each digit, 0 to 9")


class CorrectionOut(ProfileOut):
    digit: str = Field(description="the digit the sample was stored as")
    read_as: str = Field(description="what the image read as before this correction")


class StageOut(BaseModel):
    name: str = Field(description="conv_1, conv_2, ...: the model's convolutions in order")
    channels: list[int] = Field(description="the channels shown, most active first")
    maps: list[list[list[float]]] = Field(description="each channel's output, (H, W)")


class PieceExplanationOut(BaseModel):
    digit: str
    top_k: list[TopK]
    box: list[int] = Field(
        min_length=4, max_length=4, description="(x0, y0, x1, y1), end-exclusive, in the uploaded image's pixels"
    )
    target: str = Field(description="the digit whose score the attribution explains: the most probable one")
    image: list[list[float]] = Field(description="the 28x28 input the network saw, 0 (paper) to 1 (ink)")
    attribution: list[list[float]] = Field(
        description="28x28: > 0 where the pixel raised the digit's score, < 0 where it lowered it"
    )
    stages: list[StageOut]


class ExplanationOut(BaseModel):
    method: str = Field(description="the attribution used: occlusion, integrated-gradients or grad-cam")
    text: str = Field(description="what the image reads as")
    digits: list[PieceExplanationOut]
