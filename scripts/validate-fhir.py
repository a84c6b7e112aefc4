#!/usr/bin/env python3
"""Validates FHIR R4 JSON files with fhirclient's R4 models in strict mode.

Each argument is a file holding one resource (a Bundle included). Prints what is wrong and exits 1
if anything is; prints the resource counts and exits 0 otherwise.
"""
import collections
import json
import sys

from fhirclient.models import fhirelementfactory
from fhirclient.models.fhirabstractbase import FHIRValidationError


def main(paths):
    bad = 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        try:
            fhirelementfactory.FHIRElementFactory.instantiate(data["resourceType"], data)
        except (FHIRValidationError, KeyError, TypeError) as e:
            bad += 1
            print(f"{path}: not valid FHIR R4:\n{e}")
            continue
        kinds = collections.Counter(
            e["resource"]["resourceType"] for e in data.get("entry", []) if "resource" in e
        )
        print(f"{path}: valid FHIR R4 {data['resourceType']} {dict(sorted(kinds.items()))}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
