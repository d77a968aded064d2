#!/usr/bin/env python3
"""scripts/test_failures.py on a JUnit file as ctest writes it: a passed test, a GoogleTest
failure amid log lines, a sanitizer report, and a script's test that fails without one."""
import os
import subprocess
import sys
import tempfile
from xml.sax.saxutils import escape

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "test_failures.py")


def case(name, status, output):
    return (f'<testcase name="{name}" classname="{name}" time="1.5" status="{status}">'
            + ('<failure message="Failed"/>' if status == "fail" else "")
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
]))
sanitizer = case("Api.Leaks", "fail", "noise\n==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\n"
                 "#0 0x1 in f\nSUMMARY: AddressSanitizer: heap-use-after-free /src/x.cc:3 in f\n")
script = case("console_in_a_browser", "fail", "\n".join(f"line {n}" for n in range(100)))

out = run([passed])
check(out == "", "nothing is printed when no test failed", out)

out = run([passed, gtest, sanitizer, script])
check("3 test(s) failed" in out, "the count of failed tests", out)
check("Store.Passes" not in out and "not a failure" not in out, "a passed test is not shown", out)
check("=== Chaos.Ends (after 1.5 s)" in out, "each failed test is named", out)
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
