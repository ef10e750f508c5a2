"""Drives a live Updraft with the real Python Sentry SDK (pinned in scripts/ensure-sentry-sdk.sh).

usage: sentry_python.py DSN COMPRESSION RELEASE PREFIX OK CRASHED [aggregate]

COMPRESSION is none, gzip or br. Sends one handled error full of personal data (the SDK's own
scrubber is switched off, so Updraft's scrubbers are what is tested), then OK healthy and
CRASHED crashed sessions (crashed through an unhandled exception, the SDK's own crash path),
each from its own user id PREFIX-i; with `aggregate`, sessions go in request mode, which the SDK
sends as an aggregated `sessions` item. Prints the event id.
"""
import json
import os
import sys

import sentry_sdk
from sentry_sdk.scrubber import EventScrubber
from sentry_sdk.utils import event_from_exception

dsn, compression, release, prefix, ok, crashed = sys.argv[1:7]
mode = "request" if len(sys.argv) > 7 and sys.argv[7] == "aggregate" else "application"
experiments = {"transport_compression_level": 0} if compression == "none" else {"transport_compression_algo": compression}
sentry_sdk.init(
    dsn=dsn,
    release=release,
    environment="production",
    send_default_pii=True,
    event_scrubber=EventScrubber(denylist=[], pii_denylist=[], send_default_pii=True),
    default_integrations=False,
    auto_session_tracking=False,
    _experiments=experiments,
)


# The personal data comes from sentry_pii.json, so the source lines the SDK sends as frame
# context hold none of it.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sentry_pii.json")) as f:
    PII = json.load(f)


def load_config(path):
    api_key = PII["api_key"]  # noqa: F841 (a local the SDK captures)
    raise ValueError("cannot read " + path + " for " + PII["email"])


scope = sentry_sdk.get_isolation_scope()
scope.set_user({"id": prefix + "-error-user", "email": PII["email"], "ip_address": PII["ip_address"], "username": PII["username"]})
scope.set_tag("db_password", PII["db_password"])
scope.set_context("support", PII["support"])
event_id = None
try:
    load_config(PII["home"])
except ValueError:
    event_id = sentry_sdk.capture_exception()
scope.set_user(None)

for i in range(int(ok) + int(crashed)):
    sentry_sdk.get_isolation_scope().set_user({"id": "%s-%d" % (prefix, i)})
    sentry_sdk.get_isolation_scope().start_session(session_mode=mode)
    if i >= int(ok):
        try:
            raise RuntimeError("crash %d" % i)
        except RuntimeError:
            client = sentry_sdk.get_client()
            event, hint = event_from_exception(sys.exc_info(), client_options=client.options, mechanism={"type": "test", "handled": False})
            sentry_sdk.capture_event(event, hint=hint)
    sentry_sdk.get_isolation_scope().end_session()

sentry_sdk.flush(timeout=10)
print(event_id)
