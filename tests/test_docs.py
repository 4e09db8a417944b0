"""The administrator's documentation (docsrc/): it builds with Sphinx
without a single warning, every program the build installs has a man
page, and the options the guide names are options Columba knows.

Whether docsrc/reference/imapd.conf.rst matches lib/imapopts.def is
test_cyr_info.test_reference_matches_table; it is reused here, not
repeated."""
# Columba is free software; see COPYING for the licence.

import os
import re
import shutil
import subprocess
import tempfile

import pytest

from columba import build_dir, program, src_dir
from test_cyr_info import test_reference_matches_table as reference_is_current

SPHINX = shutil.which("sphinx-build")

pytestmark = pytest.mark.skipif(
    SPHINX is None, reason="needs sphinx-build (Debian package python3-sphinx)")


def docsrc():
    return os.path.join(src_dir(), "docsrc")


def run_sphinx(builder, out, doctrees):
    """sphinx-build with warnings as errors; returns the finished process."""
    return subprocess.Popen(
        [SPHINX, "-W", "--keep-going", "-q", "-b", builder, "-d", doctrees,
         docsrc(), out],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def built():
    """Both builds, run side by side into one temporary directory."""
    tmp = tempfile.mkdtemp(prefix="columba-docs-")
    out = {b: os.path.join(tmp, b) for b in ("html", "man")}
    procs = {b: run_sphinx(b, out[b], os.path.join(tmp, "doctrees-" + b))
             for b in out}
    results = {}
    try:
        for b, p in procs.items():
            stdout, stderr = p.communicate(timeout=300)
            results[b] = (p.returncode, stdout + stderr)
        yield out, results
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def installed_programs():
    """The programs `make install` installs (libexec, sbin, bin), as the
    build's Makefile lists them."""
    # Under `make check` the outer make's job server is not ours to use.
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    res = subprocess.run(["make", "-s", "--no-print-directory", "-C",
                          build_dir(), "doc-programs"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    names = [os.path.basename(p) for p in res.stdout.split()]
    return [re.sub(r"\.exe$", "", n) for n in names if n]


def test_html_builds_without_warnings(built):
    out, results = built
    rc, log = results["html"]
    assert rc == 0, "sphinx-build -W -b html failed:\n" + log
    for page in ("index.html", "quickstart.html",
                 "reference/imapd.conf.html", "reference/cyrus.conf.html",
                 "guide/distribution.html", "reference/man/master.html"):
        assert os.path.isfile(os.path.join(out["html"], page)), page


def test_man_pages_build_without_warnings(built):
    out, results = built
    rc, log = results["man"]
    assert rc == 0, "sphinx-build -W -b man failed:\n" + log
    pages = set(os.listdir(out["man"]))
    assert {"imapd.conf.5", "cyrus.conf.5", "master.8"} <= pages, pages


def test_every_installed_program_has_a_man_page(built):
    out, results = built
    assert results["man"][0] == 0, results["man"][1]
    pages = {os.path.splitext(p)[0] for p in os.listdir(out["man"])}
    programs = installed_programs()
    # The daemons and tools that exist today must all be in the list.
    for name in ("master", "imapd", "pop3d", "lmtpd", "ctl_cyrusdb",
                 "cyr_info", "reconstruct", "deliver"):
        assert name in programs, programs
    missing = sorted(set(programs) - pages)
    assert not missing, "no man page (docsrc/conf.py man_pages) for: %s" \
        % ", ".join(missing)


def test_man_pages_name_the_real_flags(built):
    """Each tool's man page documents the flags its usage message shows,
    so a flag added to the code without documentation is caught."""
    out, results = built
    assert results["man"][0] == 0, results["man"][1]
    checked = 0
    for prog in installed_programs():
        path = None
        for sub in ("imap", "master", "sieve", "perl"):
            cand = os.path.join(build_dir(), sub, prog)
            if os.access(cand, os.X_OK):
                path = cand
        page = [p for p in os.listdir(out["man"])
                if os.path.splitext(p)[0] == prog]
        if not path or not page:
            continue
        if prog in ("imapd", "pop3d", "lmtpd", "timsieved", "master"):
            continue    # daemons: no usage message to read safely
        res = subprocess.run([path, "-?"], capture_output=True, text=True,
                             timeout=30, stdin=subprocess.DEVNULL)
        usage = res.stderr + res.stdout
        if "usage" not in usage.lower():
            continue
        with open(os.path.join(out["man"], page[0]),
                  errors="replace") as f:
            man = f.read().replace("\\-", "-").replace("\\fB", "") \
                .replace("\\fP", "").replace("\\fI", "").replace("\\fR", "")
        usage = usage.replace("[no]", "")
        flags = set(re.findall(r"(?<![\w-])(-[A-Za-z])\b", usage))
        flags |= set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", usage))
        for flag in sorted(flags):
            assert re.search(r"(?<![\w-])%s(?![\w-])" % flag, man), \
                "%s: flag %s is in the usage message but not the man page" \
                % (prog, flag)
        checked += 1
    assert checked >= 10, "too few tools checked: %d" % checked


# Words in ``double back-quotes`` that look like imapd.conf options but
# are not: program names, other software's settings, file names.
NOT_OPTIONS = {
    "ctl_cyrusdb", "cyr_dbtool", "cvt_cyrusdb", "ctl_mboxlist", "cyr_expire",
    "cyr_deny", "cyr_info", "cyr_buildinfo", "mailbox_transport",
    "mailbox_command", "local_recipient_maps", "service_option",
    "servicename_option", "sync_client", "sync_server", "pwcheck_method",
}


def test_options_named_in_the_guide_exist():
    """Every imapd.conf option the hand-written pages name is in the
    option table (cyr_info conf-default), so renamed options are caught."""
    res = subprocess.run([program("imap/cyr_info"), "conf-default"],
                         capture_output=True, text=True, check=True)
    known = set()
    for line in res.stdout.splitlines():
        m = re.match(r"#?\s*([a-z0-9_-]+):", line)
        if m:
            known.add(m.group(1))
    assert "partition_select_mode" in known

    unknown = []
    for root, _, files in os.walk(docsrc()):
        for fname in files:
            if not fname.endswith(".rst") or fname == "imapd.conf.rst":
                continue
            path = os.path.join(root, fname)
            with open(path) as f:
                text = f.read()
            for word in re.findall(r"``([a-z][a-z0-9_]*_[a-z0-9_]+)``", text):
                if word in known or word in NOT_OPTIONS:
                    continue
                if word.startswith("sasl_"):
                    continue    # passed to the SASL library as they are
                if word.split("_", 1)[1] in known:
                    continue    # service_option: imaps_tls_server_cert
                unknown.append("%s: %s" % (os.path.relpath(path, docsrc()),
                                           word))
    assert not unknown, "not imapd.conf options: " + ", ".join(unknown)


def test_imapd_conf_reference_is_current(built):
    """The generated page is current, and the built manual carries every
    option of the table."""
    reference_is_current()
    out, results = built
    assert results["man"][0] == 0, results["man"][1]
    with open(os.path.join(out["man"], "imapd.conf.5"),
              errors="replace") as f:
        man = f.read().replace("\\-", "-").replace("\\_", "_")
    res = subprocess.run([program("imap/cyr_info"), "conf-default"],
                         capture_output=True, text=True, check=True)
    names = [m.group(1) for m in
             (re.match(r"#?\s*([a-z0-9_-]+):", l)
              for l in res.stdout.splitlines()) if m]
    assert len(names) > 100
    missing = [n for n in names if n not in man]
    assert not missing, missing
