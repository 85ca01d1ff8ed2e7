"""write_documents against a validating server: FerretDB v1 has no document validation, so a
collection that refuses documents the way MongoDB's `$jsonSchema` does is simulated here (the
one fault the real local server cannot produce)."""

from __future__ import annotations

from typing import Any

from pymongo import ReplaceOne
from pymongo.errors import BulkWriteError

from tasks.mongo import VALIDATION_FAILED, write_documents


class ValidatingCollection:
    """Stores documents by `_id`; refuses those whose `when` is not an int unless bypassing."""

    def __init__(self) -> None:
        self.docs: dict[Any, dict[str, Any]] = {}
        self.bypassed: list[Any] = []
        self.bypass_flags: set[Any] = set()

    def _valid(self, doc: dict[str, Any]) -> bool:
        return isinstance(doc.get("when"), int)

    def _write(self, docs: list[dict[str, Any]], bypass: bool | None, replace: bool) -> None:
        self.bypass_flags.add(bypass)
        errors = []
        for i, doc in enumerate(docs):
            if not replace and doc["_id"] in self.docs:
                errors.append({"index": i, "code": 11000, "errmsg": "duplicate key"})
            elif not self._valid(doc) and not bypass:
                errors.append({"index": i, "code": VALIDATION_FAILED, "errmsg": "failed"})
            else:
                self.docs[doc["_id"]] = dict(doc)
                if bypass:
                    self.bypassed.append(doc["_id"])
        if errors:
            raise BulkWriteError({"writeErrors": errors})

    def insert_many(
        self, docs: list[dict[str, Any]], ordered: bool = True,
        bypass_document_validation: bool | None = None,
    ) -> None:  # fmt: skip
        assert ordered is False
        self._write(docs, bypass_document_validation, replace=False)

    def bulk_write(
        self, ops: list[ReplaceOne], ordered: bool = True,
        bypass_document_validation: bool | None = None,
    ) -> None:  # fmt: skip
        docs = [op._doc for op in ops]
        self._write(docs, bypass_document_validation, replace=True)


def test_refused_documents_are_written_bypassing_validation_and_nothing_is_lost() -> None:
    coll = ValidatingCollection()
    docs = [{"_id": i, "when": i if i % 10 else f"bad {i}"} for i in range(1, 41)]
    assert write_documents(coll, docs) == 40
    assert sorted(coll.docs) == list(range(1, 41))
    assert sorted(coll.bypassed) == [10, 20, 30, 40]  # only the refused ones bypass
    assert coll.bypass_flags == {None, True}  # never `False`, which pymongo would send

    coll.bypassed.clear()
    again = [{**d, "extra": 1} for d in docs]  # a repeated batch: every _id exists
    assert write_documents(coll, again) == 40
    assert len(coll.docs) == 40 and all(d["extra"] == 1 for d in coll.docs.values())
    assert sorted(coll.bypassed) == [10, 20, 30, 40]
