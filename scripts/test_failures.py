#!/usr/bin/env python3
"""Why the tests of a ctest run failed, in a few lines each, from its JUnit file.

    python3 scripts/test_failures.py BUILD/ctest-results.xml

`make test` and `make test-sanitize` print this after a failed run, so that the reasons come
last, where a long log is read first, and not only amid the output of the tests that ran
beside them. For each failed test it prints GoogleTest's failures (the "file:line: Failure"
line and what follows it), any sanitizer report's headline and summary, or, when it finds
neither (a script's test, a time-out), the output's last lines. Exits 0; prints nothing
when no test failed.
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
SANITIZER = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|^SUMMARY: ")


def cut(line):
    if len(line) <= LINE_CHARS:
        return line
    return line[:LINE_CHARS] + f" [... {len(line) - LINE_CHARS} more characters]"


def reasons(output):
    """The lines that say why a test failed, from its whole output."""
    lines = output.splitlines()
    found = []
    i = 0
    while i < len(lines):
        if GTEST_FAILURE.match(lines[i]):
            message = [lines[i]]
            i += 1
            while i < len(lines) and not GTEST_FAILURE.match(lines[i]) and not MESSAGE_END.match(lines[i]):
                if len(message) < LINES_PER_FAILURE:
                    message.append(lines[i])
                i += 1
            found.extend(message)
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


def failed_tests(junit_path):
    root = ET.parse(junit_path).getroot()
    for case in root.iter("testcase"):
        if case.get("status") == "fail" or case.find("failure") is not None:
            out = case.find("system-out")
            yield case.get("name"), case.get("time"), (out.text or "") if out is not None else ""


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
        return 0
    print(f"\n{len(failed)} test(s) failed; why:")
    for name, seconds, output in failed:
        print(f"\n=== {name} (after {seconds} s)")
        for line in reasons(output):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
