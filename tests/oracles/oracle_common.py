"""Plumbing shared by kiln's oracle wrappers: the test venv, running tools, the report.

Nothing here judges an image; it only runs the third-party tools and collects their verdicts.
The venv and cloud-init's code are made by `tests/setup.sh` under
`$KILN_TEST_CACHE` (default `${XDG_CACHE_HOME:-~/.cache}/kiln-test`).
"""

import json
import os
import shutil
import subprocess
import sys

SETUP_HINT = "run `bash tests/setup.sh`"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# Debian keeps blkid, fsck.fat, sgdisk and mkfs.* in sbin, which a user's PATH may lack.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def cache_dir():
    if os.environ.get("KILN_TEST_CACHE"):
        return os.environ["KILN_TEST_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kiln-test")


def venv_dir():
    return os.path.join(cache_dir(), "venv")


def cloud_init_pydir():
    return os.path.join(cache_dir(), "cloud-init", "usr", "lib", "python3", "dist-packages")


def enter_venv(script):
    """Re-executes `script` under the test venv's python unless it already runs there."""
    venv = venv_dir()
    if os.path.realpath(sys.prefix) == os.path.realpath(venv):
        return
    py = os.path.join(venv, "bin", "python")
    name = os.path.basename(script)
    if not os.path.exists(py):
        print("%s: FAIL: the test venv %s is missing; %s" % (name, venv, SETUP_HINT))
        sys.exit(1)
    os.execv(py, [py, os.path.abspath(script)] + sys.argv[1:])


def find_tool(*names):
    """Path of the first of `names` on PATH (plus the sbin directories), or None."""
    path = os.environ.get("PATH", "").split(os.pathsep)
    search = os.pathsep.join(path + [d for d in SBIN if d not in path])
    for n in names:
        p = shutil.which(n, path=search)
        if p:
            return p
    return None


def run(cmd, env=None, data=None, timeout=1800):
    """Runs `cmd`; returns (exit code, stdout, stderr) as text. A missing program is 127."""
    try:
        p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, timeout=timeout)
    except FileNotFoundError:
        return 127, "", "%s: command not found" % cmd[0]
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def short(text, limit=400):
    """The last `limit` characters of `text` on one line."""
    one = " | ".join(ln.strip() for ln in text.strip().splitlines() if ln.strip())
    return one if len(one) <= limit else "..." + one[-limit:]


class Report:
    """Results of one oracle run: one line per check and a one-line verdict at the end."""

    def __init__(self, tool, subject):
        self.tool = tool
        self.subject = subject
        self.items = []

    def add(self, check, status, message, detail=None):
        self.items.append({"check": check, "status": status, "message": message,
                           "detail": detail})

    def ok(self, check, message, detail=None):
        self.add(check, "pass", message, detail)

    def fail(self, check, message, detail=None):
        self.add(check, "fail", message, detail)

    def skip(self, check, message):
        self.add(check, "skip", message)

    def note(self, check, message):
        self.add(check, "note", message)

    def missing(self, check, what):
        """A missing tool is a failure that says how to install it, never a silent pass."""
        self.fail(check, "%s is not installed; %s" % (what, SETUP_HINT))

    @property
    def failures(self):
        return [i for i in self.items if i["status"] == "fail"]

    def finish(self, as_json=False, extra=None):
        """Prints the report; returns the exit status (0 all passed, 1 something failed)."""
        ok = not self.failures
        if as_json:
            doc = {"subject": self.subject, "ok": ok, "checks": self.items}
            doc.update(extra or {})
            print(json.dumps(doc, indent=2, default=str))
            return 0 if ok else 1
        for i in self.items:
            print("%-4s %-18s %s" % (i["status"].upper(), i["check"], i["message"]))
            if i["status"] == "fail" and i["detail"]:
                det = i["detail"]
                if not isinstance(det, str):
                    det = json.dumps(det, default=str)
                for ln in det.splitlines()[:15]:
                    print("     " + ln)
        if ok:
            passed = sum(1 for i in self.items if i["status"] == "pass")
            skipped = sum(1 for i in self.items if i["status"] == "skip")
            print("%s: OK %s: %d passed, %d skipped" % (self.tool, self.subject, passed, skipped))
        else:
            what = "; ".join("%s: %s" % (i["check"], i["message"]) for i in self.failures)
            print("%s: FAIL %s: %s" % (self.tool, self.subject, what))
        return 0 if ok else 1
