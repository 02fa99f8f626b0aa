"""A tiny pytest plugin: each test's outcome, message, duration and recorded properties, as JSON.

    python -m pytest -p pytest_outcomes --outcomes-json out.json tests/gpu   # with scripts/ on sys.path

The file is rewritten after every test (and names the test that is running), so a run killed by
a timeout still leaves every finished outcome and the test that hung. Outcomes: passed, failed,
skipped, error (setup/teardown failed), xfailed, xpassed; ``running`` until a test finishes.
Properties are what a test passed to pytest's ``record_property`` (the GPU tests record rel error,
tolerance and paths). No dependency beyond pytest.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest


def _message(report: pytest.TestReport) -> str:
    """One short line: the skip reason, or the failure's assertion/exception line."""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr or "")
    return text.strip()[:500]


def _outcome(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.failed:
        return "failed" if report.when == "call" else "error"
    return report.outcome


class OutcomeRecorder:
    """Collects one entry per test node id and writes them all to ``path`` after each change."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tests: dict[str, dict] = {}
        self.t0 = time.time()
        self.exit_status: int | None = None

    def pytest_runtest_logstart(self, nodeid, location):
        self.tests[nodeid] = {"nodeid": nodeid, "outcome": "running", "seconds": 0.0, "message": "", "properties": {}}
        self.write()

    def pytest_runtest_logreport(self, report: pytest.TestReport):
        entry = self.tests.setdefault(report.nodeid, {"nodeid": report.nodeid, "outcome": "running", "seconds": 0.0,
                                                      "message": "", "properties": {}})
        entry["seconds"] = round(entry["seconds"] + report.duration, 3)
        entry["properties"].update({k: v for k, v in report.user_properties})
        # The first phase that does not pass decides (a setup skip, a call failure); else the call's pass.
        if report.when == "call" or (report.outcome != "passed" and entry["outcome"] in ("running", "passed")):
            entry["outcome"], entry["message"] = _outcome(report), _message(report) if report.outcome != "passed" else ""
        elif report.when == "teardown" and entry["outcome"] == "running":
            entry["outcome"] = "passed"
        self.write()

    def pytest_collectreport(self, report):
        if report.failed:  # an import error in a test module: no test of it runs
            self.tests[report.nodeid] = {"nodeid": report.nodeid, "outcome": "error", "seconds": 0.0,
                                         "message": _message(report), "properties": {}}
            self.write()

    def pytest_sessionfinish(self, session, exitstatus):
        self.exit_status = int(exitstatus)
        self.write()

    def summary(self) -> dict:
        counts: dict[str, int] = {}
        for entry in self.tests.values():
            counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
        return {"exit_status": self.exit_status, "seconds": round(time.time() - self.t0, 2), "counts": counts,
                "tests": list(self.tests.values())}

    def write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.summary(), indent=1, default=str))
        os.replace(tmp, self.path)


def pytest_addoption(parser):
    parser.addoption("--outcomes-json", default=None, help="write every test's outcome to this JSON file")


def pytest_configure(config):
    path = config.getoption("--outcomes-json")
    if path:
        config.pluginmanager.register(OutcomeRecorder(path), "outcome-recorder")
