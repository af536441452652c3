"""Profiles and their samples: create, add to, read, list, delete, export and import.

Try: `python -c "from digitrec.store.profiles import ProfileStore; print(ProfileStore.open('profiles.sqlite').list_profiles())"`

A profile is a name (checked: letters, digits, `.`, `_`, `-`) or an identifier the service issues
(128 random bits), and the samples of one person's hand: 28x28 MNIST-format digits kept as PNG
bytes with their label and time. Every change raises the profile's revision, which is how a
server notices that its cached `Profile` is out of date, whichever server made the change.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ParamSpec, TypeVar

import numpy as np
from PIL import Image
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..constants import IMAGE_SIZE, NUM_CLASSES
from ..errors import DigitrecError
from ..recognition.profile import Profile, adapt
from ..recognition.recognizer import Recognizer
from .db import StoreError, open_engine, shown_url
from .schema import PROFILE_ID_LENGTH, profiles, samples

# Names users give: no path separators, no quotes, nothing a shell or a URL would mangle.
PROFILE_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{PROFILE_ID_LENGTH - 1}}}")
ISSUED_ID_BYTES = 16  # 128 random bits: a service-issued profile cannot be guessed
MAX_PROFILE_SAMPLES = 1000  # a profile keeps its newest samples up to this many
MAX_SAMPLE_PNG_BYTES = 4096  # a 28x28 grey PNG is a few hundred bytes
MAX_PROFILE_FILE_BYTES = 16 * 2**20  # the largest profile file `import_profile` reads
MAX_CACHED_PROFILES = 256  # profiles a server keeps adapted in memory
EXPORT_FORMAT, EXPORT_VERSION = "digitrec-profile", 1
P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "MAX_PROFILE_SAMPLES",
    "ProfileCache",
    "ProfileInfo",
    "ProfileNotFoundError",
    "ProfileStore",
    "StoreError",
    "check_profile_name",
]


class ProfileNotFoundError(DigitrecError):
    """No profile of that name or identifier."""


@dataclass(frozen=True)
class ProfileInfo:
    """What a profile holds, without its samples."""

    id: str
    issued: bool  # created by the service
    created_at: datetime
    updated_at: datetime
    revision: int
    counts: tuple[int, ...]  # samples per digit 0-9

    @property
    def samples(self) -> int:
        return sum(self.counts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.id,
            "issued": self.issued,
            "created": self.created_at.isoformat(),
            "updated": self.updated_at.isoformat(),
            "revision": self.revision,
            "samples": self.samples,
            "per_digit": {str(d): n for d, n in enumerate(self.counts)},
        }


def check_profile_name(name: str) -> str:
    """`name` if it is a valid profile name, else DigitrecError saying what a name may hold."""
    if not isinstance(name, str) or not PROFILE_NAME.fullmatch(name):
        raise DigitrecError(
            f"{name!r} is not a profile name: use 1 to {PROFILE_ID_LENGTH} letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


def encode_png(image: np.ndarray) -> bytes:
    """A (28, 28) uint8 image, or float in [0, 1], as PNG bytes."""
    pixels = image if image.dtype == np.uint8 else np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes of a 28x28 grey sample to (28, 28) uint8; DigitrecError for anything else."""
    if len(data) > MAX_SAMPLE_PNG_BYTES:
        raise DigitrecError(f"a sample of {len(data)} bytes is larger than a 28x28 PNG can be")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG" or img.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise DigitrecError(f"a sample must be a {IMAGE_SIZE}x{IMAGE_SIZE} PNG, got {img.format} {img.size}")
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # Pillow's SyntaxError: a broken chunk
        raise DigitrecError(f"a sample is not a readable PNG ({e})") from None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)  # SQLite drops the zone


def _translated(method: Callable[P, R]) -> Callable[P, R]:
    """`method` with a database failure raised as a StoreError that says what to check."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except SQLAlchemyError as e:
            store = args[0]
            assert isinstance(store, ProfileStore)
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0][:200]
            raise StoreError(f"{store.url}: the store failed ({reason}); check that the database runs") from None

    return wrapper


class ProfileStore:
    """Profiles in one database. Every method is one transaction; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str | None = None) -> ProfileStore:
        """The store at `url` (a path, an SQLAlchemy URL; None: $DIGITREC_STORE or the default file)."""
        return cls(open_engine(url))

    @property
    def url(self) -> str:
        """The store's URL, its password hidden."""
        return shown_url(self.engine.url.render_as_string(hide_password=False))

    @_translated
    def create(self, name: str | None = None) -> str:
        """A new empty profile named `name`, or, with no name, one with a server-issued identifier
        (`issued`). Raises DigitrecError if the name is taken."""
        issued = name is None
        profile = secrets.token_hex(ISSUED_ID_BYTES) if name is None else check_profile_name(name)
        now = _now()
        try:
            with self.engine.begin() as c:
                c.execute(
                    insert(profiles).values(id=profile, issued=issued, created_at=now, updated_at=now, revision=0)
                )
        except IntegrityError:
            raise DigitrecError(f"a profile named {profile!r} exists already; choose another name") from None
        return profile

    @_translated
    def add_samples(
        self, profile: str, images: np.ndarray, labels: Sequence[int] | np.ndarray, *, create: bool = False
    ) -> ProfileInfo:
        """Add (N, 28, 28) MNIST-format samples with digit `labels` to `profile` (made first if
        `create` and missing), keeping its newest MAX_PROFILE_SAMPLES; returns its new state."""
        images = np.asarray(images)
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise DigitrecError(f"samples must be (N, {IMAGE_SIZE}, {IMAGE_SIZE}) images; got {images.shape}")
        labels = [int(x) for x in labels]
        if len(labels) != len(images) or any(not 0 <= x < NUM_CLASSES for x in labels):
            raise DigitrecError(f"one digit 0-9 per sample expected; got {len(images)} samples, labels {labels[:20]}")
        if create:  # the name checked before any query
            check_profile_name(profile)
        else:
            self._known(profile)
        rows = [encode_png(np.asarray(img)) for img in images]
        now = _now()
        with self.engine.begin() as c:
            if c.execute(select(profiles.c.id).where(profiles.c.id == profile)).first() is None:
                if not create:
                    raise self._missing(profile)
                c.execute(insert(profiles).values(id=profile, issued=False, created_at=now, updated_at=now, revision=0))
            if rows:
                c.execute(
                    insert(samples),
                    [
                        {"profile_id": profile, "label": y, "png": png, "created_at": now}
                        for y, png in zip(labels, rows)
                    ],
                )
                newest = (
                    select(samples.c.id)
                    .where(samples.c.profile_id == profile)
                    .order_by(samples.c.id.desc())
                    .limit(MAX_PROFILE_SAMPLES)
                )
                c.execute(
                    delete(samples).where(
                        samples.c.profile_id == profile, samples.c.id.not_in(newest.scalar_subquery())
                    )
                )
            c.execute(
                update(profiles)
                .where(profiles.c.id == profile)
                .values(revision=profiles.c.revision + 1, updated_at=now)
            )
        return self.info(profile)

    @_translated
    def info(self, profile: str) -> ProfileInfo:
        self._known(profile)
        with self.engine.connect() as c:
            row = c.execute(select(profiles).where(profiles.c.id == profile)).first()
            if row is None:
                raise self._missing(profile)
            rows = c.execute(
                select(samples.c.label, func.count()).where(samples.c.profile_id == profile).group_by(samples.c.label)
            ).all()
        counts = {int(label): int(n) for label, n in rows}
        return self._info(row, counts)

    @_translated
    def list_profiles(self) -> list[ProfileInfo]:
        """Every profile, oldest first."""
        with self.engine.connect() as c:
            rows = c.execute(select(profiles).order_by(profiles.c.created_at, profiles.c.id)).all()
            counts: dict[str, dict[int, int]] = {}
            for pid, label, n in c.execute(
                select(samples.c.profile_id, samples.c.label, func.count()).group_by(
                    samples.c.profile_id, samples.c.label
                )
            ):
                counts.setdefault(pid, {})[label] = n
        return [self._info(row, counts.get(row.id, {})) for row in rows]

    @_translated
    def revision(self, profile: str) -> int:
        """The profile's revision: one indexed query, made before every read with a profile."""
        self._known(profile)
        with self.engine.connect() as c:
            found = c.execute(select(profiles.c.revision).where(profiles.c.id == profile)).scalar()
        if found is None:
            raise self._missing(profile)
        return int(found)

    @_translated
    def stamp(self, profile: str) -> tuple[datetime, int]:
        """When the profile was made, and its revision: what `ProfileCache` compares, since a
        profile deleted and made again under its name counts its revisions from 0 again."""
        self._known(profile)
        with self.engine.connect() as c:
            row = c.execute(select(profiles.c.created_at, profiles.c.revision).where(profiles.c.id == profile)).first()
        if row is None:
            raise self._missing(profile)
        return _aware(row.created_at), int(row.revision)

    @_translated
    def samples(self, profile: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images (N, 28, 28) and labels (N,) of `profile`, oldest first; None: every profile's."""
        query = select(samples.c.png, samples.c.label).order_by(samples.c.id)
        with self.engine.connect() as c:
            if profile is not None:
                self._known(profile)
                if c.execute(select(profiles.c.id).where(profiles.c.id == profile)).first() is None:
                    raise self._missing(profile)
                query = query.where(samples.c.profile_id == profile)
            rows = c.execute(query).all()
        images = (
            np.stack([decode_png(r.png) for r in rows]) if rows else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        )
        return images, np.array([r.label for r in rows], dtype=np.uint8)

    def profile(self, profile: str, recognizer: Recognizer) -> Profile:
        """`profile` adapted to `recognizer`'s model, for `recognizer.recognize(..., profile=)`."""
        return adapt_profile(recognizer, *self.samples(profile))

    @_translated
    def delete(self, profile: str) -> None:
        """Delete `profile` and its samples."""
        self._known(profile)
        with self.engine.begin() as c:
            c.execute(delete(samples).where(samples.c.profile_id == profile))  # without relying on cascades
            if c.execute(delete(profiles).where(profiles.c.id == profile)).rowcount == 0:
                raise self._missing(profile)

    @_translated
    def delete_all(self) -> int:
        """Delete every profile and sample; returns how many profiles there were."""
        with self.engine.begin() as c:
            c.execute(delete(samples))
            return int(c.execute(delete(profiles)).rowcount)

    @_translated
    def export_profile(self, profile: str) -> bytes:
        """`profile` as a JSON document of its samples (PNG bytes in base64): what
        `import_profile` reads on any machine."""
        info = self.info(profile)
        query = select(samples.c.label, samples.c.png, samples.c.created_at).where(samples.c.profile_id == profile)
        with self.engine.connect() as c:
            rows = c.execute(query.order_by(samples.c.id)).all()
        document = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "profile": info.id,
            "created": info.created_at.isoformat(),
            "samples": [
                {"label": r.label, "png": base64.b64encode(r.png).decode(), "created": _aware(r.created_at).isoformat()}
                for r in rows
            ],
        }
        return json.dumps(document, indent=1).encode()

    @_translated
    def import_profile(self, data: bytes, name: str | None = None) -> ProfileInfo:
        """A profile from `export_profile`'s bytes, named `name` (default: its own name); its
        samples are added to a profile of that name if one exists."""
        if len(data) > MAX_PROFILE_FILE_BYTES:
            raise DigitrecError(f"a profile file is over the {MAX_PROFILE_FILE_BYTES}-byte limit; is it one?")
        try:
            document = json.loads(data)
            if document.get("format") != EXPORT_FORMAT:
                raise ValueError("not a digitrec profile")
            if document.get("version") != EXPORT_VERSION:
                raise ValueError(f"format version {document.get('version')!r}; this digitrec reads {EXPORT_VERSION}")
            entries = document["samples"]
            if not isinstance(entries, list) or len(entries) > MAX_PROFILE_SAMPLES:
                raise ValueError(f"'samples' must be a list of at most {MAX_PROFILE_SAMPLES}")
            labels = [e["label"] for e in entries]
            if any(type(x) is not int or not 0 <= x < NUM_CLASSES for x in labels):  # not 7.5, "7" or true
                raise ValueError("every sample's 'label' must be a digit 0-9")
            images = [decode_png(base64.b64decode(e["png"], validate=True)) for e in entries]
            name = check_profile_name(document["profile"] if name is None else name)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, binascii.Error) as e:
            # OverflowError: a label of 1e400; a KeyError's message is the bare key
            raise DigitrecError(f"not a profile file made by `digitrec profiles export` ({e!s:.200})") from None
        except RecursionError:  # JSON nested thousands deep
            raise DigitrecError("not a profile file made by `digitrec profiles export` (nested too deep)") from None
        stack = np.stack(images) if images else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        return self.add_samples(name, stack, labels, create=True)

    @staticmethod
    def _info(row: Any, counts: dict[int, int]) -> ProfileInfo:
        return ProfileInfo(
            id=row.id,
            issued=bool(row.issued),
            created_at=_aware(row.created_at),
            updated_at=_aware(row.updated_at),
            revision=int(row.revision),
            counts=tuple(int(counts.get(d, 0)) for d in range(NUM_CLASSES)),
        )

    @classmethod
    def _known(cls, profile: str) -> None:
        """ProfileNotFoundError, without a query, for what no profile can be named (a NUL byte,
        which PostgreSQL refuses to compare, a path): only names and issued identifiers are stored."""
        if not isinstance(profile, str) or not PROFILE_NAME.fullmatch(profile):
            raise cls._missing(profile)

    @staticmethod
    def _missing(profile: str) -> ProfileNotFoundError:
        shown = profile if isinstance(profile, str) and PROFILE_NAME.fullmatch(profile) else repr(profile)[:80]
        return ProfileNotFoundError(
            f"no profile {shown}; `digitrec profiles list` shows them, `digitrec personalize` makes one"
        )


class ProfileCache:
    """Profiles adapted to one recognizer, kept until their revision changes: a read with a
    profile costs one query (its revision) unless the profile changed since the last read.
    Safe to share between threads (a server's request threads)."""

    def __init__(self, store: ProfileStore, recognizer: Recognizer, size: int = MAX_CACHED_PROFILES) -> None:
        self.store, self.recognizer, self.size = store, recognizer, size
        self._cache: OrderedDict[str, tuple[tuple[datetime, int], Profile]] = OrderedDict()
        self._lock = threading.Lock()  # around the dictionary only: never held over a query

    def get(self, profile: str) -> Profile:
        """The adapted profile; ProfileNotFoundError if there is none of that name."""
        stamp = self.store.stamp(profile)
        with self._lock:
            cached = self._cache.get(profile)
            if cached is not None and cached[0] == stamp:
                self._cache.move_to_end(profile)
                return cached[1]
        # Read after the stamp: samples newer than it are kept under the older stamp, and so
        # adapted again on the next read, never the other way round.
        adapted = adapt_profile(self.recognizer, *self.store.samples(profile))
        with self._lock:
            self._cache[profile] = (stamp, adapted)
            self._cache.move_to_end(profile)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return adapted

    def forget(self, profile: str) -> None:
        with self._lock:
            self._cache.pop(profile, None)


def adapt_profile(recognizer: Recognizer, images: np.ndarray, labels: np.ndarray) -> Profile:
    """The Profile of (N, 28, 28) samples with digit `labels`, on `recognizer`'s features."""
    if len(images) == 0:
        return adapt(np.zeros((0, 1), np.float32), np.zeros(0, np.int64))
    _, features = recognizer.features(images)
    return adapt(features, labels)
