"""Checks and hooks for the schemathesis run of crates/web/tests/openapi.rs (T39, T8, T40).

Loaded through SCHEMATHESIS_HOOKS. The test sets:
  CALDICOTT_HIDDEN         comma-separated texts that only entries hidden from the caller carry
                           (a marker in their text, their ids; a patient-bound run): no response
                           may carry any of them, whatever was asked (T1, T8)
  CALDICOTT_PATIENT_ID     the caller's patient: generated patient ids are replaced by it, so the
                           run reaches a real record rather than only unknown ids
"""

import os
import re

import schemathesis

HIDDEN = [h for h in os.environ.get("CALDICOTT_HIDDEN", "").split(",") if h]
PATIENT = os.environ.get("CALDICOTT_PATIENT_ID", "")

# What an error body must never show (T40): a panic, SQL, a source path or a driver's words.
INTERNALS = re.compile(
    r"panicked at|stack backtrace|\bsqlx\b|SQLSTATE|\bSELECT\b[^\n]*\bFROM\b|\bINSERT INTO\b|"
    r"/src/\w+\.rs|\.cargo/registry|error returned from database"
)


@schemathesis.check
def no_hidden_content(ctx, response, case):
    """Nothing hidden from a patient-bound caller reaches it, by any route (T1, T8)."""
    for h in HIDDEN:
        if h in response.text:
            raise AssertionError(f"a hidden entry ({h}) reached a patient-bound caller")


@schemathesis.check
def patient_data_is_never_cached(ctx, response, case):
    """Every JSON answer says Cache-Control: no-store (T39's custom check)."""
    cache = response.headers.get("cache-control", [""])
    cache = cache[0] if isinstance(cache, list) else cache
    if "no-store" not in cache:
        raise AssertionError(f"Cache-Control is {cache!r}, not no-store")


@schemathesis.check
def errors_show_no_internals(ctx, response, case):
    """An error names the problem, never the code, the SQL or a stack (T40)."""
    if response.status_code >= 400 and INTERNALS.search(response.text):
        raise AssertionError(f"the error shows internals: {response.text[:300]}")


@schemathesis.hook
def map_path_parameters(ctx, path_parameters):
    if PATIENT and path_parameters and ctx.operation is not None:
        if "id" in path_parameters and "/Patient/" in ctx.operation.path:
            path_parameters["id"] = PATIENT
    return path_parameters


@schemathesis.hook
def map_query(ctx, query):
    if PATIENT and query and "patient" in query:
        query["patient"] = PATIENT
    return query
