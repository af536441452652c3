"""The personalisation store: profiles and their samples in a database (SQLAlchemy, Alembic).

SQLite in the user's data folder by default; PostgreSQL (`postgresql://...`) for several servers
sharing their profiles. Torch-free.
"""
