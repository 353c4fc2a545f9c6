"""schemathesis hooks for the OpenAPI fuzz run (tests/test_openapi_fuzz.py): loaded by schemathesis, not pytest."""

import schemathesis

# POST /api/v1/bounces takes a raw delivery status notification (message/rfc822): text, sent as it is.
schemathesis.serializer.alias("message/rfc822", "text/plain")
