"""Object stores behind one interface, chosen by settings (local filesystem now; S3 later)."""

from radqc.objectstore.base import ObjectStore, PutResult, content_hash, key_for
from radqc.objectstore.local import LocalObjectStore

__all__ = ["ObjectStore", "PutResult", "LocalObjectStore", "content_hash", "key_for"]
