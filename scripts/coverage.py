#!/usr/bin/env python3
"""Line and branch coverage per component, from a build made with -DCCM_COVERAGE=ON after the
suite has run in it (`make coverage`). Prints one table; exits 1 naming every component whose
line coverage is below its target (the targets of section 4 of the plan).

Usage: coverage.py BUILD_DIR"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (component, target line coverage %, its files). Every other file under src/ is "the rest".
COMPONENTS = [
    ("CloudEvents publisher", 85, ["src/cloudevents/base64.cc", "src/cloudevents/cloud_event.cc",
                                   "src/cloudevents/http_binding.cc", "src/cloudevents/json_format.cc",
                                   "src/app/dispatcher.cc", "src/runtime/circuit_breaker.cc",
                                   "src/clients/http_event_sink.cc"]),
    ("instance event publishing", 90, ["src/app/events.cc", "src/wire/event_data.cc"]),
    ("CloudEvent handler", 85, ["src/app/receiver.cc"]),
    ("assessment handlers", 90, ["src/app/assessment_handlers.cc", "src/wire/assessment_events.cc"]),
    ("collection service", 85, ["src/app/collection.cc"]),
    ("pod generation", 95, ["src/domain/pod.cc", "src/app/pods.cc", "src/wire/pod.cc"]),
    ("assessment / grading engine clients", 80, ["src/clients/assessment_platform_client.cc",
                                                 "src/clients/authorized_caller.cc",
                                                 "src/clients/oidc_token_provider.cc"]),
]


def percent(covered, total):
    return 100.0 * covered / total if total else 100.0


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build-coverage"
    summary = os.path.join(build, "coverage.json")
    # Throw branches are the compiler's exception edges (every call that may throw), not
    # decisions of ours; they are left out of the branch figures.
    subprocess.run(["gcovr", "--root", ROOT, "--object-directory", build, "--filter", os.path.join(ROOT, "src/"),
                    "--exclude-throw-branches", "--exclude-unreachable-branches", "--gcov-ignore-parse-errors",
                    "--json-summary", summary], check=True, stdout=subprocess.DEVNULL)
    files = {f["filename"]: f for f in json.load(open(summary))["files"]}
    missing = [name for _, _, names in COMPONENTS for name in names if name not in files]
    if missing:
        print(f"coverage: no data for {', '.join(missing)} (was the suite run in {build}?)")
        return 1
    claimed = {name for _, _, names in COMPONENTS for name in names}
    rows = [(c, t, names) for c, t, names in COMPONENTS]
    rows.append(("the rest of src/ (no target)", None, sorted(set(files) - claimed)))
    print(f"{'component':<40} {'lines':>17} {'branches':>17} {'target':>7}")
    failures = []
    for component, target, names in rows:
        lc = sum(files[n]["line_covered"] for n in names)
        lt = sum(files[n]["line_total"] for n in names)
        bc = sum(files[n]["branch_covered"] for n in names)
        bt = sum(files[n]["branch_total"] for n in names)
        line = percent(lc, lt)
        verdict = ""
        if target is not None:
            verdict = "ok" if line >= target else "BELOW"
            if line < target:
                failures.append(f"{component}: line coverage {line:.1f}% is below its target {target}%")
        print(f"{component:<40} {line:6.1f}% {lc:4}/{lt:<5} {percent(bc, bt):6.1f}% {bc:4}/{bt:<5} "
              f"{(str(target) + '%') if target else '-':>6} {verdict}")
    total_lc = sum(f["line_covered"] for f in files.values())
    total_lt = sum(f["line_total"] for f in files.values())
    print(f"{'all of src/':<40} {percent(total_lc, total_lt):6.1f}% {total_lc:4}/{total_lt:<5}")
    for f in failures:
        print("coverage: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
