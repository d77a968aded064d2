#!/usr/bin/env python3
"""Why the tests of a ctest run failed, in a few lines each, from its JUnit file.

    python3 scripts/test_failures.py BUILD/ctest-results.xml

`make test` and `make test-sanitize` print this after a failed run, so that the reasons come
last, where a long log is read first, and not only amid the output of the tests that ran
beside them. For each failed test it prints how long it ran, GoogleTest's
failures (the "file:line: Failure" line and what follows it), the headline and summary
lines of any sanitizer report, or, when it finds neither (a script's test, a time-out), the
output's last lines; and each test ctest could not run, with its reason. Exits 0, or 2 on a
wrong command line.
"""
import re
import sys
import xml.etree.ElementTree as ET

LINE_CHARS = 1500        # a longer line (a whole instance in JSON) is cut, saying so
LINES_PER_FAILURE = 30   # a GoogleTest failure's message
LINES_PER_TEST = 120     # all that is printed of one test
TAIL_LINES = 20          # the output's end, for a test without a recognised failure

GTEST_FAILURE = re.compile(r"^\S.*:\d+: Failure$|^unknown file: Failure$")
# The lines that end a failure's message: GoogleTest's own markers and ccm's log lines.
MESSAGE_END = re.compile(r"^\[( RUN|  +OK|  FAILED|-{10}|={10}|\d{4}-\d\d-\d\d )")
SANITIZER = re.compile(r"(ERROR|WARNING): \w+Sanitizer|runtime error:|^SUMMARY: ")
# A sanitizer's report, which ends a failure's message before it (its frames are left out).
REPORT_START = re.compile(r"^=+$|^==\d+==")


def cut(line):
    if len(line) <= LINE_CHARS:
        return line
    return line[:LINE_CHARS] + f" [... {len(line) - LINE_CHARS} more characters]"


def ends_message(line):
    return bool(GTEST_FAILURE.match(line) or MESSAGE_END.match(line) or REPORT_START.match(line)
                or SANITIZER.search(line))


def reasons(output):
    """The lines that say why a test failed, from its whole output."""
    lines = output.splitlines()
    found = []
    i = 0
    while i < len(lines):
        if GTEST_FAILURE.match(lines[i]):
            message = [lines[i]]
            i += 1
            dropped = 0
            while i < len(lines) and not ends_message(lines[i]):
                if len(message) < LINES_PER_FAILURE:
                    message.append(lines[i])
                else:
                    dropped += 1
                i += 1
            found.extend(message)
            if dropped:
                found.append(f"[... {dropped} more lines of this failure]")
            continue
        if SANITIZER.search(lines[i]):
            found.append(lines[i])
        i += 1
    if not found:
        found = ["(no failure line found; the output's last lines)"] + lines[-TAIL_LINES:]
    if len(found) > LINES_PER_TEST:
        left = len(found) - LINES_PER_TEST
        found = found[:LINES_PER_TEST] + [f"[... {left} more lines]"]
    return [cut(line) for line in found]


# What ctest says of a test it skipped on purpose, as against one it could not run.
SKIPPED_ON_PURPOSE = re.compile(r"^(Disabled|SKIP_RETURN_CODE=|SKIP_REGULAR_EXPRESSION_MATCHED)")


def failed_tests(junit_path):
    """(name, verdict, seconds, output, ran) of each test that failed or could not run."""
    root = ET.parse(junit_path).getroot()
    for case in root.iter("testcase"):
        out = case.find("system-out")
        output = (out.text or "") if out is not None else ""
        failure, skipped = case.find("failure"), case.find("skipped")
        if case.get("status") == "fail" or failure is not None:
            # ctest 3.25 leaves the failure's message empty; a later one may name it (Timeout, ...).
            verdict = (failure.get("message") if failure is not None else "") or "failed"
            yield case.get("name"), verdict, case.get("time"), output, True
        elif skipped is not None and not SKIPPED_ON_PURPOSE.match(skipped.get("message", "")):
            yield case.get("name"), skipped.get("message", "Not Run"), case.get("time"), output, False


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        failed = list(failed_tests(argv[1]))
    except (OSError, ET.ParseError) as e:
        print(f"test_failures: cannot read {argv[1]}: {e}", file=sys.stderr)
        return 0
    if not failed:
        print(f"\n{argv[1]} names no test that failed or could not run; ctest's own output above says why it failed")
        return 0
    print(f"\n{len(failed)} test(s) failed or could not run; why:")
    for name, verdict, seconds, output, ran in failed:
        if not ran:
            print(f"\n=== {name}: not run ({verdict})")
            continue
        print(f"\n=== {name}: {verdict} after {float(seconds or 0):.1f} s")
        for line in reasons(output):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
