"""Standard vocabularies as versioned data files: billing parts, exam items, old 2012 codes, tags.

Importing this package reads nothing; every table is loaded on first use and cached.
"""

from radqc.vocab.items import (
    BillingPart,
    Code2012,
    ExamItem,
    Match2012,
    catalogue_2012,
    exam_items,
    find_items,
    item,
    lookup_2012,
    map_2012,
    norm_key,
    part,
    part_by_code,
    parts,
    umbrella_words,
    vocab_version,
)
from radqc.vocab.tags import TagDef, tag, tags

#: Alias of :func:`vocab_version` for callers that look for ``version`` (stage fingerprints).
version = vocab_version

__all__ = [
    "BillingPart", "Code2012", "ExamItem", "Match2012", "catalogue_2012", "exam_items", "find_items", "item",
    "lookup_2012", "map_2012", "norm_key", "part", "part_by_code", "parts", "umbrella_words", "vocab_version",
    "TagDef", "tag", "tags", "version",
]
