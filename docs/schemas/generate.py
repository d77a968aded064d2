#!/usr/bin/env python3
"""Writes the JSON Schemas of the data of every CloudEvent ccm publishes and consumes, one file
per type and version, into this folder (docs/schemas/<type>.v<N>.json), and the AsyncAPI 3
document that catalogues them (docs/asyncapi.yaml). The files are committed; a test checks
they are what this script writes, another validates the data of every event ccm sends
against them, another validates the AsyncAPI document with the AsyncAPI parser. A change of
shape is a new version (a new file, a new dataschema URI), never an edit of v1. The schemas
keep to what JSON Schema draft 07 and 2020-12 share, so AsyncAPI tools read them as they are.

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
    instance("ccm.lablet.instance.running", "RUNNING", "The lab runs. pod_assigned is false here: the pod is sent after this move (see pod.assigned).", {
        "worker_hostname": nullable(STRING), "cml_lab_id": nullable(STRING), "allocated_ports": PORTS,
        "started_at": nullable(TIME), "pod_assigned": {"type": "boolean"}}),
    instance("ccm.lablet.instance.pod.assigned", "RUNNING",
             "The Grading Engine took the instance's pod (sent after the move to RUNNING, retried until taken).", {
                 "session_id": ID, "part_id": ID,
                 "failed_attempts": {"type": "integer", "minimum": 0,
                                     "description": "attempts that failed before this one"}}, reason=False),
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

OUTCOMES = ["graded", "not_assessed", "collection_failed", "grading_failed", "timed_out", "instantiation_failed",
            "cancelled"]
STAGES = ["scheduling", "instantiation", "running", "collection", "grading", "stopping"]
ENDING = {
    "outcome": {"enum": OUTCOMES, "description": "how the lablet ended; anything but graded means it has no score"},
    "failure": {
        "type": ["object", "null"],
        "description": "why it ended without a score; null when graded",
        "required": ["stage", "code", "message"],
        "additionalProperties": False,
        "properties": {
            "stage": {"enum": STAGES, "description": "what the lablet was doing when it ended"},
            "code": {"type": "string", "minLength": 1,
                     "description": "machine-readable: ccm's snake_case code (collecting_timeout, "
                                    "collection_refused, termination_requested, ...) or the error_code the "
                                    "platform reported"},
            "message": {"type": "string", "description": "for people"},
        },
    },
}
GRADED_OR_LATER = INSTANCE_STATES[INSTANCE_STATES.index("GRADING"):]


def version2(entry, extra, states=None, description=None):
    """The v2 schema of a published v1 entry: its properties plus `extra`, all required."""
    event_type, v1_description, schema = entry
    props = dict(schema["properties"], **extra)
    if states:
        props["new_state"] = {"enum": states}
    return event_type, description or v1_description, dict(schema, required=sorted(props), properties=props)


def published(event_type):
    return next(e for e in PUBLISHED if e[0] == event_type)


# Version 2 of the types whose data grew: what ccm publishes now (see docs/events.md).
PUBLISHED_V2 = [
    version2(published("ccm.lablet.instance.grading.completed"), {
        "revision": {"type": "integer", "minimum": 1,
                     "description": "1 for the instance's first score; each re-grade adds one"},
        "score_event_id": {"type": ["string", "null"],
                           "description": "id of the assessment event that carried the score; null for an "
                                          "operator's"}},
        states=GRADED_OR_LATER,
        description="A score was stored: the first (written just before the move to STOPPING), or a later one "
                    "(a re-grade, or a score after a time-out) in whatever state the instance is, until "
                    "retention removes it. The latest revision is the instance's score."),
    version2(published("ccm.lablet.instance.stopping"), ENDING),
    version2(published("ccm.lablet.instance.terminated"), ENDING),
]
CURRENT_VERSION = {t: 2 for t, _, _ in PUBLISHED_V2}

# What ccm accepts (the canonical shape; the .v1 names and older field names are accepted too,
# see docs/assessment-integration.md).
CONSUMED = [
    ("assessment.collection.completed", "The platform collected an instance's work: COLLECTING -> GRADING. "
     "collection_id and artifacts_uri are stored when given.", {
        "type": "object", "required": ["instance_id"],
        "properties": {"instance_id": ID, "collection_id": ID, "artifacts_uri": ID}}),
    ("assessment.grading.completed", "The Grading Engine scored the work: score stored, GRADING -> STOPPING. "
     "A later one with another event id is a re-grade: kept as the next revision, published again.", {
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
    versions = [(entry, 1) for entry in PUBLISHED + CONSUMED] + [(entry, 2) for entry in PUBLISHED_V2]
    for (event_type, description, schema), version in versions:
        yield f"{event_type}.v{version}.json", {
            "$id": f"/schemas/{event_type}.v{version}.json",
            "title": f"data of {event_type}" + (f" (version {version})" if version > 1 else ""),
            "description": description,
            **schema,
        }


def schema_file(event_type):
    return f"{event_type}.v{CURRENT_VERSION.get(event_type, 1)}.json"


def yaml_scalar(v):
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v)  # a double-quoted YAML string


def to_yaml(v, indent=0):
    """A small YAML emitter for dicts, lists and scalars (the document is ours: no anchors)."""
    pad = "  " * indent
    lines = []
    if isinstance(v, dict):
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                lines.append(f"{pad}{k}:")
                lines.extend(to_yaml(x, indent + 1))
            else:
                lines.append(f"{pad}{k}: {yaml_scalar(x) if not isinstance(x, (dict, list)) else ('{}' if isinstance(x, dict) else '[]')}")
    else:
        for x in v:
            if isinstance(x, (dict, list)) and x:
                sub = to_yaml(x, indent + 1)
                lines.append(f"{pad}- {sub[0].strip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {yaml_scalar(x)}")
    return lines


def message_key(event_type):
    parts = event_type.replace("ccm.lablet.", "").replace("ccm.", "").replace("assessment.", "assessment_").split(".")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


CE_HEADERS = {
    "type": "object",
    "description": "CloudEvents 1.0 attributes as HTTP headers (binary mode). In structured mode (the default, "
                   "application/cloudevents+json) and batch mode (application/cloudevents-batch+json) the same "
                   "attributes are members of the JSON event and the data is its `data` member; so are the "
                   "Distributed Tracing extension's traceparent and tracestate (see docs/events.md, Tracing).",
    "required": ["ce-specversion", "ce-id", "ce-source", "ce-type"],
    "properties": {
        "ce-specversion": {"const": "1.0"},
        "ce-id": {"type": "string", "description": "unique per source; (source, id) is the dedup key"},
        "ce-source": {"type": "string", "description": "ccm: CLOUDEVENTS_SOURCE (default `ccm`)"},
        "ce-type": {"type": "string"},
        "ce-subject": {"type": "string", "description": "the instance or worker id; order holds per subject"},
        "ce-time": {"type": "string", "format": "date-time"},
        "ce-dataschema": {"type": "string", "format": "uri",
                          "description": "{CCM_PUBLIC_URL}/schemas/{type}.v{N}.json, N the version of the "
                                         "type's data (2 for stopping, terminated and grading.completed)"},
        "content-type": {"const": "application/json"},
        "ce-traceparent": {"type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}",
                           "description": "CloudEvents Distributed Tracing extension: the W3C traceparent of the "
                                          "event's own span. Lablet events, and other events made within a trace, "
                                          "carry one, child of the work that made the event (the API request's or "
                                          "inbound event's trace, else the "
                                          "lablet's own trace, recorded on it as trace_id/traceparent). A consumed "
                                          "event's traceparent parents what ccm does with it; an invalid one is "
                                          "ignored, never refused."},
        "ce-tracestate": {"type": "string",
                          "description": "Distributed Tracing extension: the W3C tracestate of the trace, passed on "
                                         "as received (at most 32 members, 512 characters)."},
        "traceparent": {"type": "string",
                        "description": "W3C Trace Context header, the same value as the traceparent attribute: ccm's "
                                       "sink requests carry it in binary and structured mode (one event, one hop; a "
                                       "batch carries none), and ccm reads it from requests to POST /api/v1/events "
                                       "as the trace of events that have no traceparent attribute."},
        "tracestate": {"type": "string", "description": "W3C Trace Context header, beside traceparent."},
    },
}


def asyncapi():
    published = {message_key(t): t for t, _, _ in PUBLISHED}
    consumed = {message_key(t): t for t, _, _ in CONSUMED}
    descriptions = {t: d for t, d, _ in PUBLISHED + CONSUMED + PUBLISHED_V2}
    messages = {}
    for key, event_type in list(published.items()) + list(consumed.items()):
        messages[key] = {
            "name": event_type,
            "title": event_type,
            "summary": descriptions[event_type],
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
            "payload": {"$ref": f"./schemas/{schema_file(event_type)}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ccm lablet events",
            "version": "1.0.0",
            "description": "The CloudEvents 1.0 that ccm publishes about lablet instances, workers and scaling, "
                           "and the ones it consumes from the Assessment Platform. HTTP binding, JSON format. "
                           "See docs/events.md and docs/assessment-integration.md.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "sink": {"host": "sink.example.com", "protocol": "http",
                     "description": "CLOUDEVENTS_SINK_URL: where ccm delivers its outbox (at least once, in order "
                                    "per subject)."},
            "ccm": {"host": "ccm.example.com", "protocol": "http",
                    "description": "ccm itself; POST /api/v1/events needs a bearer token with ccm.events.publish.",
                    "security": [{"$ref": "#/components/securitySchemes/bearer"}]},
        },
        "channels": {
            "lifecycle": {
                "address": "/",
                "title": "Published lifecycle events",
                "description": "Every state an instance or a worker enters, and every scaling decision, POSTed to "
                               "the sink: structured by default, binary or batch by CLOUDEVENTS_MODE. 2xx is "
                               "delivered; connection errors, 408, 429 and 5xx are retried; other 4xx are final.",
                "servers": [{"$ref": "#/servers/sink"}],
                "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in published},
            },
            "assessment": {
                "address": "/api/v1/events",
                "title": "Consumed assessment events",
                "description": "Events of the Assessment Platform and the Grading Engine. 202 applied or duplicate, "
                               "400 not a CloudEvent, 409 illegal move, 413 too large, 415 unsupported media type, "
                               "422 invalid data or unknown instance; 207 for a batch with a refusal.",
                "servers": [{"$ref": "#/servers/ccm"}],
                "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in consumed},
            },
        },
        "operations": {
            "publishLifecycle": {
                "action": "send",
                "channel": {"$ref": "#/channels/lifecycle"},
                "summary": "ccm publishes lifecycle events.",
                "messages": [{"$ref": f"#/channels/lifecycle/messages/{k}"} for k in published],
            },
            "receiveAssessment": {
                "action": "receive",
                "channel": {"$ref": "#/channels/assessment"},
                "summary": "ccm consumes assessment events.",
                "messages": [{"$ref": f"#/channels/assessment/messages/{k}"} for k in consumed],
            },
        },
        "components": {
            "schemas": {"CloudEventHeaders": CE_HEADERS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "messages": messages,
        },
    }


def main():
    check = "--check" in sys.argv
    stale = []
    outputs = [(name, json.dumps(doc, indent=2) + "\n") for name, doc in documents()]
    outputs.append(("../asyncapi.yaml", "# Written by docs/schemas/generate.py; do not edit by hand.\n" +
                    "\n".join(to_yaml(asyncapi())) + "\n"))
    for name, text in outputs:
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
