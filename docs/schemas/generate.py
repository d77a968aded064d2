#!/usr/bin/env python3
"""Writes the JSON Schemas (2020-12) of the data of every CloudEvent ccm publishes and consumes,
one file per type and version, into this folder: docs/schemas/<type>.v1.json. The files are
committed; a test checks they are what this script writes, and another validates the data of
every event ccm sends against them. A change of shape is a new version (a new file, a new
dataschema URI), never an edit of v1.

Usage: generate.py [--check]"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INSTANCE_STATES = ["PENDING", "SCHEDULED", "INSTANTIATING", "RUNNING", "COLLECTING", "GRADING", "STOPPING",
                   "STOPPED", "ARCHIVED", "TERMINATED"]
WORKER_STATES = ["PENDING", "PROVISIONING", "RUNNING", "DRAINING", "STOPPING", "STOPPED", "TERMINATED"]

STRING = {"type": "string"}
ID = {"type": "string", "minLength": 1}
TIME = {"type": "string", "format": "date-time"}
PORTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 65535},
         "description": "port name -> allocated port"}
SCORE = {
    "type": "object",
    "required": ["total", "max", "passed", "breakdown"],
    "additionalProperties": False,
    "properties": {
        "total": {"type": "number", "minimum": 0},
        "max": {"type": "number", "exclusiveMinimum": 0},
        "passed": {"type": ["boolean", "null"]},
        "breakdown": {"type": "array", "items": {
            "type": "object", "required": ["criterion", "points", "max"], "additionalProperties": False,
            "properties": {"criterion": STRING, "points": {"type": "number", "minimum": 0},
                           "max": {"type": "number", "minimum": 0}}}},
    },
}


def nullable(schema):
    s = dict(schema)
    s["type"] = [s["type"], "null"]
    return s


def instance(event_type, new_state, description, extra=None, previous=True, reason=True):
    props = {
        "instance_id": ID, "definition_id": ID, "definition_version": STRING,
        "previous_state": {"enum": INSTANCE_STATES if previous else [None]},
        "new_state": {"const": new_state},
        "worker_id": nullable(ID), "timestamp": TIME,
    }
    if reason:
        props["reason"] = {"type": "string", "description": "why the move happened"}
    props.update(extra or {})
    return event_type, description, {
        "type": "object", "required": sorted(props), "additionalProperties": False, "properties": props}


def worker(event_type, new_state, description, extra=None, created=False):
    props = {"worker_id": ID, "name": STRING,
             "previous_state": {"enum": [None]} if created else {"enum": WORKER_STATES},
             "new_state": {"const": new_state}, "timestamp": TIME}
    if not created:
        props["reason"] = STRING
    props.update(extra or {})
    return event_type, description, {
        "type": "object", "required": sorted(props), "additionalProperties": False, "properties": props}


def scaling(event_type, description, props, required):
    props = dict(props, worker_id=ID, timestamp=TIME)
    return event_type, description, {
        "type": "object", "required": sorted(required + ["worker_id", "timestamp"]), "additionalProperties": False,
        "properties": props}


PUBLISHED = [
    instance("ccm.lablet.instance.pending", "PENDING", "An instance was created.", {
        "owner_id": ID, "reservation_id": nullable(ID), "timeslot_start": TIME, "timeslot_end": TIME,
        "created_at": TIME}, previous=False, reason=False),
    instance("ccm.lablet.instance.scheduled", "SCHEDULED", "Capacity and ports were reserved on a worker.",
             {"allocated_ports": PORTS}),
    instance("ccm.lablet.instance.provisioning.started", "INSTANTIATING",
             "The lab is being imported and started on the worker's CML.",
             {"allocated_ports": PORTS, "lab_yaml_hash": nullable(STRING)}),
    instance("ccm.lablet.instance.running", "RUNNING", "The lab runs; the pod was assigned if pod_assigned.", {
        "worker_hostname": nullable(STRING), "cml_lab_id": nullable(STRING), "allocated_ports": PORTS,
        "started_at": nullable(TIME), "pod_assigned": {"type": "boolean"}}),
    instance("ccm.lablet.instance.collecting.started", "COLLECTING",
             "The collection was asked of the Assessment Platform.", {
                 "triggered_by": STRING,
                 "collection_reason": {"enum": ["manual", "timeslot_end", "assessment_request"]}}),
    instance("ccm.lablet.instance.grading.started", "GRADING", "The collection is done; grading goes on.",
             {"collection_id": nullable(STRING)}),
    instance("ccm.lablet.instance.grading.completed", "GRADING",
             "The Grading Engine's score was stored (written just before the move to STOPPING).",
             {"score": nullable(SCORE), "grading_duration_seconds": {"type": "number", "minimum": 0}},
             reason=False),
    instance("ccm.lablet.instance.stopping", "STOPPING", "The lab is being stopped."),
    instance("ccm.lablet.instance.stopped", "STOPPED", "The lab is stopped on CML."),
    instance("ccm.lablet.instance.archived", "ARCHIVED", "Archived; the worker's capacity was released."),
    instance("ccm.lablet.instance.terminated", "TERMINATED",
             "The lab was wiped and deleted and the ports released (or nothing had been started).", {
                 "final_state": {"enum": INSTANCE_STATES, "description": "the state the instance ended from"},
                 "grading_score": nullable(SCORE), "duration_minutes": {"type": "integer", "minimum": 0}}),
    worker("ccm.worker.pending", "PENDING", "A worker was registered or asked for.",
           {"hostname": STRING, "license_type": {"enum": ["PERSONAL", "ENTERPRISE", "EVALUATION"]}}, created=True),
    worker("ccm.worker.provisioning.started", "PROVISIONING", "The worker's machine is starting."),
    worker("ccm.worker.running", "RUNNING", "The worker takes instances."),
    worker("ccm.worker.draining", "DRAINING", "The worker takes no new instances.", {
        "running_instances_count": {"type": "integer", "minimum": 0},
        "estimated_drain_completion": nullable(TIME)}),
    worker("ccm.worker.stopping", "STOPPING", "The worker is stopping."),
    worker("ccm.worker.stopped", "STOPPED", "The worker is stopped (released to the cloud provider if launched)."),
    worker("ccm.worker.terminated", "TERMINATED", "The worker is gone."),
    scaling("ccm.scaling.up.requested", "Due instances fit no running worker: a worker is asked for.",
            {"template": STRING, "reason": STRING, "pending_instances": {"type": "integer", "minimum": 1}},
            ["template", "reason", "pending_instances"]),
    scaling("ccm.scaling.up.completed", "The worker asked for runs.", {"template": STRING, "hostname": STRING},
            ["template", "hostname"]),
    scaling("ccm.scaling.down.requested", "An idle launched worker is drained.", {"reason": STRING}, ["reason"]),
    scaling("ccm.scaling.down.completed", "The drained worker was released.", {}, []),
]

# What ccm accepts (the canonical shape; the .v1 names and older field names are accepted too,
# see docs/assessment-integration.md).
CONSUMED = [
    ("assessment.collection.completed", "The platform collected an instance's work: COLLECTING -> GRADING.", {
        "type": "object", "required": ["instance_id", "collection_id", "artifacts_uri"],
        "properties": {"instance_id": ID, "collection_id": ID, "artifacts_uri": ID}}),
    ("assessment.grading.completed", "The Grading Engine scored the work: score stored, GRADING -> STOPPING.", {
        "type": "object", "required": ["instance_id", "score"],
        "properties": {"instance_id": ID, "passed": {"type": "boolean"}, "score": {
            "type": "object", "required": ["total", "max"],
            "properties": {"total": {"type": "number", "minimum": 0}, "max": {"type": "number", "exclusiveMinimum": 0},
                           "passed": {"type": "boolean"},
                           "breakdown": SCORE["properties"]["breakdown"]}}}}),
    ("assessment.collection.failed", "The collection failed; retried when retry_possible, else STOPPING.", {
        "type": "object", "required": ["instance_id", "error_code"],
        "properties": {"instance_id": ID, "error_code": ID, "error_message": STRING,
                       "retry_possible": {"type": "boolean"}}}),
    ("assessment.grading.failed", "Grading failed: the failure is recorded, GRADING -> STOPPING.", {
        "type": "object", "required": ["instance_id", "error_code"],
        "properties": {"instance_id": ID, "error_code": ID, "error_message": STRING}}),
]


def documents():
    for event_type, description, schema in PUBLISHED + CONSUMED:
        yield f"{event_type}.v1.json", {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"/schemas/{event_type}.v1.json",
            "title": f"data of {event_type}",
            "description": description,
            **schema,
        }


def main():
    check = "--check" in sys.argv
    stale = []
    for name, doc in documents():
        text = json.dumps(doc, indent=2) + "\n"
        path = os.path.join(HERE, name)
        if check:
            if not os.path.exists(path) or open(path).read() != text:
                stale.append(name)
        else:
            with open(path, "w") as f:
                f.write(text)
    if stale:
        print("docs/schemas: out of date, run docs/schemas/generate.py: " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
