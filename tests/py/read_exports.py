"""Reads a FHIR Bundle with PyPI's fhir.resources (R4B models: FHIR R4's technical
correction, the R4 line of the package) and an EDF+ file with PyPI's edfio, and prints what
they hold as one JSON object, for the system test to compare with the station's database.

Usage: read_exports.py BUNDLE.json FILE.edf
"""

import json
import sys

import edfio
from fhir.resources.R4B.bundle import Bundle


def main():
    bundle = Bundle.model_validate_json(open(sys.argv[1], encoding="utf-8").read())
    out = {"fhir": {"patients": [], "devices": [], "numerics": [], "waves": []}}
    for e in bundle.entry:
        r = e.resource
        kind = r.__resource_type__ if hasattr(r, "__resource_type__") else type(r).__name__
        if kind == "Patient":
            out["fhir"]["patients"].append({
                "mrn": r.identifier[0].value,
                "family": r.name[0].family,
                "gender": r.gender,
                "birthDate": str(r.birthDate),
            })
        elif kind == "Device":
            out["fhir"]["devices"].append(r.identifier[0].value)
        elif kind == "Observation":
            codes = {c.system: c.code for c in r.code.coding}
            subject = r.subject.reference if r.subject else None
            if r.valueQuantity is not None:
                out["fhir"]["numerics"].append({
                    "mdc": codes.get("urn:iso:std:iso:11073:10101"),
                    "loinc": codes.get("http://loinc.org"),
                    "time": r.effectiveDateTime.isoformat(),
                    "value": float(r.valueQuantity.value),
                    "ucum": r.valueQuantity.code,
                    "subject": subject,
                })
            elif r.valueSampledData is not None:
                s = r.valueSampledData
                out["fhir"]["waves"].append({
                    "mdc": codes.get("urn:iso:std:iso:11073:10101"),
                    "start": r.effectivePeriod.start.isoformat(),
                    "period_ms": float(s.period),
                    "factor": float(s.factor),
                    "origin": float(s.origin.value),
                    "n": len(s.data.split()),
                })
    edf = edfio.read_edf(sys.argv[2])
    out["edf"] = {
        "patient": {"code": edf.patient.code, "sex": edf.patient.sex, "name": edf.patient.name},
        "start": f"{edf.startdate} {edf.starttime}",
        "signals": [
            {"label": s.label, "rate": s.sampling_frequency, "unit": s.physical_dimension,
             "data": [float(v) for v in s.data]}
            for s in edf.signals
        ],
        "annotations": [{"onset": a.onset, "duration": a.duration, "text": a.text} for a in edf.annotations],
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
