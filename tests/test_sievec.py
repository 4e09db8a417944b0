"""End-to-end tests of sievec: compiling scripts to bytecode, error
reports with line numbers, the extensions imapd.conf enables, usage."""
# Columba is free software; see COPYING for the licence.

import subprocess

from columba import program


def sievec(*args):
    return subprocess.run([program("sieve/sievec")] + list(args),
                          capture_output=True, timeout=30)


def write_conf(tmp_path, extra=""):
    conf = tmp_path / "imapd.conf"
    conf.write_text("configdirectory: %s\n%s" % (tmp_path, extra))
    return str(conf)


GOOD = b"""require ["fileinto", "variables", "vacation", "imap4flags"];
# file list mail by its list name
if header :matches "list-id" "*<*.example.org>*" {
    addflag "\\\\Seen";
    fileinto "lists.${2}";
    stop;
}
vacation :days 7 :subject "Away" text:
I am away until Monday.
..
.
;
"""


def test_compiles_good_script(tmp_path):
    conf = write_conf(tmp_path)
    (tmp_path / "s.sieve").write_bytes(GOOD)
    out = tmp_path / "s.bc"
    res = sievec("-C", conf, str(tmp_path / "s.sieve"), str(out))
    assert res.returncode == 0, res.stderr
    assert res.stderr == b""
    data = out.read_bytes()
    assert data[:4] == b"CSBC"
    assert data[4] == 1                     # bytecode version
    assert b"lists.${2}" in data
    assert b"I am away until Monday.\r\n.\r\n" in data


def test_reports_errors_with_lines(tmp_path):
    conf = write_conf(tmp_path)
    script = tmp_path / "bad.sieve"
    script.write_bytes(b'require "fileinto";\nkeep;\n\nfrobnicate "x";\n'
                       b'if header :bogus "a" "b" { keep; }\n'
                       b'redirect :copy "a@b.c";\n')
    out = tmp_path / "bad.bc"
    res = sievec("-C", conf, str(script), str(out))
    assert res.returncode == 1
    err = res.stderr.decode()
    assert "line 4: " in err and 'unknown command "frobnicate"' in err
    assert "line 5: " in err and 'unexpected tag ":bogus"' in err
    assert "line 6: " in err and "copy" in err
    assert not out.exists()


def test_hostile_input(tmp_path):
    conf = write_conf(tmp_path)
    cases = {
        b"keep;\n\x00discard;": b"line 2: ",
        b"if true {" * 500: b"nested too deeply",
        b'vacation text:\nno end\n': b"unterminated multi-line string",
        b'keep; "' + b"x" * 200000: b"string too long",
    }
    for i, (text, want) in enumerate(cases.items()):
        script = tmp_path / ("h%d.sieve" % i)
        script.write_bytes(text)
        res = sievec("-C", conf, str(script), str(tmp_path / "h.bc"))
        assert res.returncode == 1, text[:40]
        assert want in res.stderr, res.stderr


def test_extensions_follow_config(tmp_path):
    conf = write_conf(tmp_path, "sieve_extensions: fileinto envelope\n")
    script = tmp_path / "v.sieve"
    script.write_bytes(b'require "vacation";\nvacation "x";\n')
    res = sievec("-C", conf, str(script), str(tmp_path / "v.bc"))
    assert res.returncode == 1
    assert b'line 1: column 9: unsupported extension "vacation"' in \
        res.stderr
    script.write_bytes(b'require "fileinto";\nfileinto "x";\n')
    res = sievec("-C", conf, str(script), str(tmp_path / "v.bc"))
    assert res.returncode == 0, res.stderr


def test_usage_and_missing_file(tmp_path):
    res = sievec()
    assert res.returncode == 64
    assert b"usage: sievec [-C imapd.conf] script.sieve out.bc" in res.stderr
    conf = write_conf(tmp_path)
    res = sievec("-C", conf, str(tmp_path / "nope.sieve"),
                 str(tmp_path / "x.bc"))
    assert res.returncode == 1
    assert b"cannot read" in res.stderr
