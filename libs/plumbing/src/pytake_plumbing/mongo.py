"""MongoDB access through PyMongo's native async client."""

from __future__ import annotations

from pymongo import AsyncMongoClient


def make_mongo_client(url: str) -> AsyncMongoClient:
    return AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=5000, uuidRepresentation="standard")
