"""The store's tables, as SQLAlchemy Core: what the queries use and the migrations create.

Try: `python -c "from digitrec.store.schema import metadata; print(list(metadata.tables))"`
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
)

PROFILE_ID_LENGTH = 64  # the longest profile name; server-issued identifiers are 32 characters

metadata = MetaData()

profiles = Table(
    "profiles",
    metadata,
    Column("id", String(PROFILE_ID_LENGTH), primary_key=True),
    # Created by the service with an unguessable identifier: its holder may correct and delete it.
    Column("issued", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Raised by every change to the samples: a server compares it to the profile it has cached.
    Column("revision", Integer, nullable=False),
)

samples = Table(
    "samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "profile_id",
        String(PROFILE_ID_LENGTH),
        ForeignKey("profiles.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column(
        "label", SmallInteger, CheckConstraint("label >= 0 AND label <= 9", name="label_is_a_digit"), nullable=False
    ),
    Column("png", LargeBinary, nullable=False),  # the 28x28 MNIST-format piece the network saw
    Column("created_at", DateTime(timezone=True), nullable=False),
)
