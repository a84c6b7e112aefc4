#!/usr/bin/env python3
"""Reads a patient through caldicott's FHIR API with fhirclient, the SMART on FHIR Python client.

    fhir-client-check.py BASE CLIENT_ID CLIENT_SECRET LINK_TOKEN [PATIENT_ID]

With PATIENT_ID the app asks for a token for someone the link's holder acts for as a proxy.

Fetches the CapabilityStatement and the SMART configuration, swaps the link's token for an
access token at the token endpoint, then reads the Patient, searches every resource type the
server offers a search of (with every _include it declares), reads each document's Binary, and
pages through Patient/$everything. Every resource is parsed by fhirclient's R4 models in strict
mode, so anything that is not valid FHIR R4 fails here, and every JSON answer is walked for
empty arrays, objects and strings, which FHIR does not allow (an empty element is left out). Prints a JSON summary (resource ids by
type, included resources, binaries, pages) for the caller to check; exits 1 on any failure.
"""
import json
import sys

from fhirclient import client
from fhirclient.models import binary, bundle, patient


def no_empty(value, at="$"):
    """Fails on an empty array, object or string anywhere in an answer."""
    if isinstance(value, (list, dict, str)) and len(value) == 0:
        raise AssertionError(f"an empty {type(value).__name__} at {at}")
    if isinstance(value, list):
        for i, v in enumerate(value):
            no_empty(v, f"{at}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            no_empty(v, f"{at}.{k}")
    return value


def main(base, client_id, secret, link, acting_for=None):
    smart = client.FHIRClient(settings={"app_id": "caldicott-check", "api_base": base})
    server = smart.server
    cap = server.capabilityStatement  # fetched and parsed strictly
    no_empty(server.request_json("metadata"))
    searchable = [r for r in cap.rest[0].resource if any(i.code == "search-type" for i in r.interaction)]
    types = [r.type for r in searchable]
    smart = server.session.get(base + "/.well-known/smart-configuration").json()
    form = {"grant_type": "refresh_token", "refresh_token": link, "scope": "patient/*.read"}
    if acting_for:
        form["patient"] = acting_for
    res = server.post_as_form(smart["token_endpoint"], form, auth=(client_id, secret))
    token = res.json()
    server.session.headers["Authorization"] = "Bearer " + token["access_token"]
    me = patient.Patient(no_empty(server.request_json(f"Patient/{token['patient']}")))
    seen, included, binaries = {}, [], {}
    for r in searchable:
        t = r.type
        found = no_empty(server.request_json(f"{t}?patient={me.id}&_count=1000"))
        b = bundle.Bundle(found)  # strict: every entry's resource is parsed as its own type
        seen[t] = sorted(e.resource.id for e in (b.entry or []))
        for inc in r.searchInclude or []:
            b = bundle.Bundle(no_empty(server.request_json(f"{t}?patient={me.id}&_count=1000&_include={inc}")))
            included += [f"{e.resource.resource_type}/{e.resource.id}" for e in (b.entry or []) if e.search.mode == "include"]
    for doc_id in seen.get("DocumentReference", []):
        url = f"Binary/{doc_id}"
        b = binary.Binary(no_empty(server.request_json(url)))  # asks for application/fhir+json
        binaries[doc_id] = b.contentType
    pages, everything = 0, []
    url = f"Patient/{me.id}/$everything?_count=100"
    while url:
        b = bundle.Bundle(no_empty(server.request_json(url)))
        pages += 1
        everything += [f"{e.resource.resource_type}/{e.resource.id}" for e in (b.entry or [])]
        url = next((l.url for l in (b.link or []) if l.relation == "next"), None)
    print(json.dumps({
        "patient": me.id,
        "nhs_number": me.identifier[0].value,
        "types": types,
        "search": seen,
        "included": sorted(set(included)),
        "binaries": binaries,
        "everything": everything,
        "pages": pages,
    }))


if __name__ == "__main__":
    main(*sys.argv[1:6])
