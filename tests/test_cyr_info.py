"""End-to-end tests of cyr_info: the configuration as an administrator
sees it, the lint check, and the option reference generated from the one
option table."""
# Columba is free software; see COPYING for the licence.

import os
import subprocess

from columba import program, src_dir


def cyr_info(conf, *args):
    return subprocess.run([program("imap/cyr_info"), "-C", conf] + list(args),
                          capture_output=True, text=True, timeout=30)


def write(tmp_path, text):
    path = tmp_path / "imapd.conf"
    path.write_text(text)
    return str(path)


def test_reference_matches_table():
    """docsrc/reference/imapd.conf.rst is what `cyr_info conf-doc` prints
    from lib/imapopts.def: regenerate it with `make imapd-conf-doc`."""
    out = subprocess.run([program("imap/cyr_info"), "conf-doc"],
                         capture_output=True, text=True, check=True).stdout
    with open(os.path.join(src_dir(), "docsrc/reference/imapd.conf.rst")) as f:
        assert f.read() == out, "run `make imapd-conf-doc` and commit"
    for name in ("configdirectory", "partition_select_mode", "tls_versions",
                 "mboxlist_db", "lmtp_strict_quota", "sieve_maxscripts"):
        assert name in out


def test_conf_shows_set_options_and_defaults(tmp_path):
    conf = write(tmp_path, "configdirectory: %s\n"
                 "altnamespace: no\n"
                 "timeout: 45\n"
                 "partition-default: /var/spool/x\n" % tmp_path)
    res = cyr_info(conf, "conf")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "altnamespace: no" in lines
    assert "timeout: 45" in lines

    allres = cyr_info(conf, "conf-all")
    assert allres.returncode == 0
    assert any(l.startswith("mboxlist_db: twoskip") for l in
               allres.stdout.splitlines())


def test_conf_lint_flags_unknown_options(tmp_path):
    good = write(tmp_path, "configdirectory: %s\n" % tmp_path)
    assert cyr_info(good, "conf-lint").returncode == 0

    bad = write(tmp_path, "configdirectory: %s\nbogusoption: 1\n" % tmp_path)
    res = cyr_info(bad, "conf-lint")
    assert res.returncode != 0
    assert "bogusoption" in res.stdout + res.stderr
    assert ":2" in res.stdout + res.stderr


def test_bad_values_name_file_line_and_option(tmp_path):
    cases = {
        "virtdomains: sometimes\n": "virtdomains",
        "timeout: soon\n": "timeout",
        "altnamespace: maybe\n": "altnamespace",
        "defaultpartition:\n": "defaultpartition",
        "no colon here\n": "",
    }
    for line, option in cases.items():
        conf = write(tmp_path, "configdirectory: %s\n%s" % (tmp_path, line))
        res = cyr_info(conf, "conf")
        assert res.returncode != 0, line
        assert "imapd.conf" in res.stderr and ":2" in res.stderr, res.stderr
        assert option in res.stderr

    missing = write(tmp_path, "altnamespace: yes\n")
    res = cyr_info(missing, "conf")
    assert res.returncode != 0
    assert "configdirectory" in res.stderr
