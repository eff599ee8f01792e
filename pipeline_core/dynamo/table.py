"""The jobs table's I/O: consistent reads, conditional writes and transactions, with values encoded once.

Every conditional write asks DynamoDB for the item as it was when the condition failed
(``ReturnValuesOnConditionCheckFailure=ALL_OLD``): a refused write raises ``ConditionFailed`` carrying that item
(None when there was none), so a caller classifies the refusal without reading the item again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from pipeline_core.dynamo.expressions import Cond, Update, render

BATCH_GET = 100  # keys per BatchGetItem request (DynamoDB's limit)
_DESERIALIZE = TypeDeserializer()


def to_dynamo(value: Any) -> Any:
    """Floats become Decimals, recursively, as the DynamoDB resource API requires."""
    if isinstance(value, float):
        return Decimal(str(round(value, 6)))
    if isinstance(value, Mapping):
        return {k: to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    """Decimals become ints or floats, recursively."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


def from_wire(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An item in DynamoDB's typed JSON (``{"S": ...}``, as error responses and streams carry it) as Python values."""
    if not item:
        return None
    return {name: from_dynamo(_DESERIALIZE.deserialize(value)) for name, value in item.items()}


class ConditionFailed(Exception):
    """A conditional write's condition did not hold; ``old`` is the item as DynamoDB found it (None: no item)."""

    def __init__(self, old: dict[str, Any] | None):
        super().__init__("the conditional request failed")
        self.old = old


class TransactionRefused(Exception):
    """A transaction whose conditions did not all hold: ``failed`` names the writes whose did not, ``old`` holds the
    item each of those found (by the write's index)."""

    def __init__(self, failed: list[int], old: dict[int, dict[str, Any] | None]):
        super().__init__(f"transaction refused by condition(s) of write(s) {failed}")
        self.failed = failed
        self.old = old


@dataclass(frozen=True)
class Write:
    """One conditional update of one item."""

    key: Mapping[str, str]
    update: Update
    condition: Cond

    def request(self) -> dict[str, Any]:
        rendered = render(self.update, self.condition)
        if "ExpressionAttributeValues" in rendered:
            rendered["ExpressionAttributeValues"] = to_dynamo(rendered["ExpressionAttributeValues"])
        return {"Key": dict(self.key), **rendered, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class Table:
    """A DynamoDB table (a boto3 ``Table`` resource) as the job store uses it."""

    def __init__(self, resource: Any):
        self.resource = resource
        self.name: str = resource.name

    def get(self, key: Mapping[str, str]) -> dict[str, Any] | None:
        item = self.resource.get_item(Key=dict(key), ConsistentRead=True).get("Item")
        return None if item is None else dict(from_dynamo(item))

    def batch_get(self, keys: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
        """The items of ``keys`` that exist (consistent reads, ``BATCH_GET`` keys a request, unprocessed keys retried)."""
        client = self.resource.meta.client  # the resource's client: Python values in and out, as the table's
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), BATCH_GET):
            request: dict[str, Any] = {self.name: {"Keys": [dict(k) for k in keys[start : start + BATCH_GET]], "ConsistentRead": True}}
            while request:
                response = client.batch_get_item(RequestItems=request)
                found += [dict(from_dynamo(raw)) for raw in response.get("Responses", {}).get(self.name, [])]
                request = response.get("UnprocessedKeys") or {}
        return found

    def scan(self) -> Iterator[dict[str, Any]]:
        """Every item, page by page."""
        request: dict[str, Any] = {}
        while True:
            page = self.resource.scan(**request)
            yield from (dict(from_dynamo(item)) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def put(self, item: Mapping[str, Any], condition: Cond) -> None:
        """Put ``item`` if ``condition`` holds; ConditionFailed otherwise."""
        rendered = render(condition=condition)
        if "ExpressionAttributeValues" in rendered:
            rendered["ExpressionAttributeValues"] = to_dynamo(rendered["ExpressionAttributeValues"])
        try:
            self.resource.put_item(Item=to_dynamo(item), **rendered, ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as error:
            _raise_if_refused(error)
            raise

    def update(self, write: Write, returns_new: bool = False) -> dict[str, Any]:
        """Apply ``write`` if its condition holds (ConditionFailed otherwise); the item it left when ``returns_new``."""
        try:
            response = self.resource.update_item(**write.request(), **({"ReturnValues": "ALL_NEW"} if returns_new else {}))
        except ClientError as error:
            _raise_if_refused(error)
            raise
        return dict(from_dynamo(response.get("Attributes") or {}))

    def update_if(self, write: Write) -> bool:
        """``update``: True when applied, False when its condition did not hold."""
        try:
            self.update(write)
        except ConditionFailed:
            return False
        return True

    def transact(self, writes: Sequence[Write]) -> None:
        """Conditional updates applied together or not at all (``TransactWriteItems``)."""
        try:
            self.resource.meta.client.transact_write_items(
                TransactItems=[{"Update": {"TableName": self.name, **write.request()}} for write in writes]
            )
        except ClientError as error:
            if _code(error) != "TransactionCanceledException":
                raise
            reasons: list[Any] = list(error.response.get("CancellationReasons") or [])
            failed = [index for index, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed"]
            if reasons and not failed:
                raise  # cancelled for another reason (a conflict, throttling): the caller's retry decides
            old = {index: from_wire(reasons[index].get("Item")) for index in failed}
            raise TransactionRefused(failed, old) from None


def _raise_if_refused(error: ClientError) -> None:
    """A conditional check failure becomes ConditionFailed, with the item it found; any other error is the caller's."""
    if _code(error) == "ConditionalCheckFailedException":
        found: Any = error.response.get("Item")  # ALL_OLD's item, in DynamoDB's typed JSON (not in botocore's error shape)
        raise ConditionFailed(from_wire(found)) from None
