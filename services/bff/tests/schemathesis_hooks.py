"""Schemathesis hooks for the second run of tests/schemathesis.rs (conforming requests must be
accepted): they supply what the garage's state decides and the document cannot say, just
before each request is sent. Schemathesis checks the request against the document again
after these changes, so a request they change still counts as conforming only if it is.

Each change names the rule it stands for; docs/openapi.md lists them with the operations
tests/schemathesis.toml leaves out.
"""

import datetime
import os
import uuid

import schemathesis

# The garage's currency (the test's garage is in EUR): a price, a labour rate or a payment in
# another is refused, and the document cannot name the currency of the tenant it is served to.
CURRENCY = "EUR"


def _in_the_garages_currency(value):
    if isinstance(value, dict):
        if "amountMinor" in value and "currency" in value:
            value["currency"] = CURRENCY
        for item in value.values():
            _in_the_garages_currency(item)
    elif isinstance(value, list):
        for item in value:
            _in_the_garages_currency(item)


def _moment(text):
    try:
        if len(text) == 10:
            return datetime.datetime.combine(
                datetime.date.fromisoformat(text), datetime.time(), datetime.timezone.utc
            )
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _in_order(query, start, end):
    """`end` must not be before `start`: a rule between two parameters."""
    if not query or start not in query or end not in query:
        return
    first, last = _moment(str(query[start])), _moment(str(query[end]))
    if first is not None and last is not None and first > last:
        query[start], query[end] = query[end], query[start]


@schemathesis.hook
def before_call(context, case, kwargs):
    # An Idempotency-Key names one request: the same key with another body is refused (422,
    # as the IETF Idempotency-Key draft says). Generated keys repeat ("0", "null"), so each
    # request gets a key of its own.
    for name in list(case.headers or {}):
        if name.lower() == "idempotency-key":
            case.headers[name] = str(uuid.uuid4())
    if isinstance(case.body, (dict, list)):
        _in_the_garages_currency(case.body)
    if case.query:
        # A cursor is a token the list returned (its position, encoded): any other string is
        # refused, so this run asks for the first page.
        if "cursor" in case.query:
            case.query["cursor"] = ""
        _in_order(case.query, "from", "to")
        _in_order(case.query, "issuedFrom", "issuedTo")
    # A work order's vehicle must be its customer's: the test's customer and vehicle.
    if (
        case.method.upper() == "POST"
        and case.path == "/api/work-orders"
        and isinstance(case.body, dict)
    ):
        case.body["customerId"] = os.environ["CARERP_FUZZ_CUSTOMER"]
        case.body["vehicleId"] = os.environ["CARERP_FUZZ_VEHICLE"]
