#!/usr/bin/env python3
"""scripts/test_failures.py on a JUnit file as ctest writes it: a passed test, GoogleTest
failures amid log lines, a sanitizer report (alone, and after a failure), a script's test
that fails without either, a test ctest could not run and one it skipped on purpose."""
import os
import subprocess
import sys
import tempfile
from xml.sax.saxutils import escape

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "test_failures.py")


def case(name, status, output, verdict="", skipped=None):
    return (f'<testcase name="{name}" classname="{name}" time="1.5" status="{status}">'
            + (f'<failure message="{verdict}"/>' if status == "fail" else "")
            + (f'<skipped message="{skipped}"/>' if skipped else "")
            + f"<system-out>{escape(output)}</system-out></testcase>")


def run(cases):
    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="(empty)">' + "".join(cases) + "</testsuite>")
    try:
        r = subprocess.run([sys.executable, SCRIPT, f.name], capture_output=True, text=True, check=False)
    finally:
        os.unlink(f.name)
    assert r.returncode == 0, r
    return r.stdout


def check(condition, what, out):
    if not condition:
        print(f"FAILED: {what}\n--- output ---\n{out}")
        sys.exit(1)


passed = case("Store.Passes", "run", "/src/a_test.cc:10: Failure\nnot a failure: it passed\n")
gtest = case("Chaos.Ends", "fail", "\n".join([
    "[ RUN      ] Chaos.Ends",
    "[2026-12-02 16:52:30.146] [warning] POST /events -> 503: ",
    "/work/tests/integration/chaos_test.cc:173: Failure",
    "Expected equality of these values:",
    "  stopping",
    '    Which is: "collection timed out"',
    "seed 7, normal: " + "x" * 3000,
    "[2026-12-02 16:52:31.000] [warning] a log line after the failure",
    "/work/tests/integration/chaos_test.cc:226: Failure",
    "Expected: (ways_out.size()) >= (3u), actual: 2 vs 3",
    "[  FAILED  ] Chaos.Ends (38720 ms)",
    "[ RUN      ] Chaos.Throws",
    "unknown file: Failure",
    "C++ exception with description \"bad\" thrown in the test body.",
    "[  FAILED  ] Chaos.Throws (1 ms)",
    "/src/long_test.cc:5: Failure",
] + [f"message line {n}" for n in range(40)] + [
    "[  FAILED  ] Chaos.Long (1 ms)",
    "/src/uaf_test.cc:9: Failure",
    "Value of: store.Open()",
    "=================================================================",
    "==42==ERROR: AddressSanitizer: heap-use-after-free on address 0x2",
    "    #0 0x2 in ~Store",
    "SUMMARY: AddressSanitizer: heap-use-after-free /src/store.cc:7 in ~Store",
]), verdict="Timeout")
sanitizer = case("Api.Leaks", "fail", "noise\n==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\n"
                 "#0 0x1 in f\nSUMMARY: AddressSanitizer: heap-use-after-free /src/x.cc:3 in f\n")
script = case("console_in_a_browser", "fail", "\n".join(f"line {n}" for n in range(100)))
not_run = case("cluster_check", "notrun", "", skipped="Unable to find executable: /build/ccm")
disabled = case("Old.Disabled", "disabled", "", skipped="Disabled")

out = run([passed, disabled])
check("names no test that failed or could not run" in out and "Old.Disabled" not in out,
      "a run without a failed test says so, and a test skipped on purpose is not one", out)

out = run([passed, gtest, sanitizer, script, not_run, disabled])
check("4 test(s) failed or could not run" in out, "the count of failed tests", out)
check("Store.Passes" not in out and "not a failure" not in out and "Old.Disabled" not in out,
      "a passed or disabled test is not shown", out)
check("=== Chaos.Ends: Timeout after 1.5 s" in out and "=== Api.Leaks: failed after 1.5 s" in out,
      "each failed test is named, with ctest's verdict when it gives one", out)
check("=== cluster_check: not run (Unable to find executable: /build/ccm)" in out,
      "a test ctest could not run, with why", out)
check("unknown file: Failure\nC++ exception with description" in out and "Chaos.Throws" not in out,
      "an exception's failure, ended by GoogleTest's marker", out)
check("message line 28\n[... 11 more lines of this failure]" in out and "message line 29" not in out,
      "a long message is cut after 30 lines, saying how many more", out)
check("Value of: store.Open()\n=====" not in out and "Value of: store.Open()\n==42==ERROR: AddressSanitizer" in out
      and "SUMMARY: AddressSanitizer: heap-use-after-free /src/store.cc:7" in out and "in ~Store\nSUMMARY" not in out,
      "a sanitizer report ends the failure before it and shows its headline and summary", out)
check("chaos_test.cc:173: Failure\nExpected equality of these values:\n  stopping\n" in out,
      "a failure's message follows its line", out)
check("chaos_test.cc:226: Failure\nExpected: (ways_out.size()) >= (3u)" in out, "every failure is shown", out)
check("POST /events -> 503" not in out and "a log line after" not in out, "log lines are left out", out)
check("[... 1516 more characters]" in out, "a long line is cut, saying by how much", out)
check("ERROR: AddressSanitizer: heap-use-after-free" in out and "SUMMARY: AddressSanitizer" in out,
      "a sanitizer's headline and summary", out)
check("#0 0x1 in f" not in out, "not the sanitizer's whole stack", out)
check("(no failure line found; the output's last lines)\nline 80\n" in out and "line 99" in out
      and "line 79\n" not in out, "a test without a failure line shows its output's last 20 lines", out)
print("ok")
