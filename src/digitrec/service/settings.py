"""What a server needs to start: the model, where to listen, and every request limit, in one place.

Try: `python -c "from digitrec.service.settings import Settings; print(Settings().limits())"`.

Imports neither fastapi nor torch: the CLI reads these defaults for `digitrec serve --help`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from ..errors import DigitrecError
from ..image.decode import MAX_PIXELS

# --- where and how to serve (the defaults of `digitrec serve`) -------------------------------------
DEFAULT_HOST = "127.0.0.1"  # this machine only; 0.0.0.0 listens on every interface
DEFAULT_PORT = 8000
DEFAULT_WORKERS = 1  # recognition processes; 1: recognitions run in threads of the server's process
MAX_WORKERS = 64  # each process holds a model; past the machine's cores more only queue
DEFAULT_THREADS = 1  # backend threads per recognition: requests run in parallel instead

# --- request limits ---------------------------------------------------------------------------------
# The first four are Settings' defaults (a server may lower them); the rest are fixed.
MAX_UPLOAD_BYTES = 16 * 2**20  # one image; phone photos are 2-12 MiB
# A 12-megapixel phone photo. Decoding one costs about 150 MB: at the decoder's own cap (40 M),
# eight 40 KB PNGs took a server from 120 MB to 1 GB (docs/benchmarks.md, service_abuse.py).
MAX_UPLOAD_PIXELS = 12_000_000
LARGE_IMAGE_PIXELS = 4_000_000  # images over this are read LARGE_AT_ONCE at a time ...
LARGE_AT_ONCE = 1  # ... so that a few of them cannot take the memory and threads small ones need
QUEUE_BUDGET_S = 10.0  # a large image waits at most this long for its turn, then 503 with Retry-After
MAX_QUEUE_BUDGET_S = 300.0
MAX_BATCH_FILES = 32  # images per batch request
MAX_BATCH_BYTES = 64 * 2**20  # a whole batch request
MULTIPART_OVERHEAD = 64 * 2**10  # boundaries and part headers around a single upload
MAX_FORM_FIELDS = 16  # non-file multipart fields accepted (and ignored)
MAX_NAME_CHARS = 200  # an uploaded file name is echoed back at most this long
MIN_ADMIN_TOKEN_CHARS = 16  # an admin token short enough to guess is refused
ADMIN_TOKEN_ENV = "DIGITREC_ADMIN_TOKEN"


def _cpu_count() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    """Everything a server needs to start: the model and the request limits."""

    model: str | None = None  # .onnx or .safetensors; None: the shipped model
    threads: int = DEFAULT_THREADS
    workers: int = DEFAULT_WORKERS
    concurrency: int = field(default_factory=_cpu_count)  # threads: recognitions at once
    max_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_UPLOAD_PIXELS
    max_batch_files: int = MAX_BATCH_FILES
    max_batch_bytes: int = MAX_BATCH_BYTES
    large_at_once: int = LARGE_AT_ONCE
    queue_budget_s: float = QUEUE_BUDGET_S
    # Lexicons requests may name (`lexicon=NAME`): {name: file of valid values, one per line}.
    lexicons: dict[str, str] = field(default_factory=dict)
    store: str | None = None  # the profiles' database URL; None: $DIGITREC_STORE or the default file
    # Listing and deleting all profiles, and changing CLI-named ones, need `Authorization: Bearer`
    # this token; None: nobody may.
    admin_token: str | None = None

    def __post_init__(self) -> None:
        for name in (
            "threads",
            "workers",
            "concurrency",
            "max_bytes",
            "max_pixels",
            "max_batch_files",
            "max_batch_bytes",
            "large_at_once",
        ):
            if getattr(self, name) < 1:
                raise DigitrecError(f"service setting {name} must be at least 1; got {getattr(self, name)}")
        for name in self.lexicons:
            if not name or not name.replace("-", "").replace("_", "").isalnum():
                raise DigitrecError(f"lexicon name {name!r}: use letters, digits, - and _ (as in postcodes=codes.txt)")
        if not 0 < self.queue_budget_s <= MAX_QUEUE_BUDGET_S:
            raise DigitrecError(f"service setting queue_budget_s must be above 0 and at most {MAX_QUEUE_BUDGET_S}")
        if self.admin_token is not None and len(self.admin_token) < MIN_ADMIN_TOKEN_CHARS:
            raise DigitrecError(
                f"the admin token must have at least {MIN_ADMIN_TOKEN_CHARS} characters; "
                "`python -c 'import secrets; print(secrets.token_urlsafe())'` makes one"
            )
        if self.max_pixels > MAX_PIXELS:
            raise DigitrecError(
                f"service setting max_pixels can be at most {MAX_PIXELS:,} (the decoder's cap); got {self.max_pixels:,}"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls(**json.loads(text))

    def limits(self) -> dict[str, int]:
        """The limits a client can run into, as `/api/v1/model` lists them."""
        return {
            "max_bytes": self.max_bytes,
            "max_pixels": self.max_pixels,
            "max_batch_files": self.max_batch_files,
            "max_batch_bytes": self.max_batch_bytes,
        }
