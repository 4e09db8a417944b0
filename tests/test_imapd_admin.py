"""End-to-end tests of imapd's mailbox and administration surface:
LIST-EXTENDED with SPECIAL-USE, LIST-STATUS and LIST-MYRIGHTS, METADATA
and the older ANNOTATEMORE commands, ACL and LISTRIGHTS, QUOTA (RFC
9208), STATUS=SIZE, APPENDLIMIT, MULTIAPPEND, literal8, UTF8=ACCEPT and
the Cyrus admin commands (CREATE/RENAME with a partition, XFER,
RECONSTRUCT), spoken over a raw socket and imaplib against a real
master on loopback."""

import imaplib
import os
import re
import shutil
import subprocess
import time

import pytest

from columba import Instance, free_port, program

pytestmark = pytest.mark.skipif(
    not shutil.which("saslpasswd2"), reason="needs saslpasswd2 (sasl2-bin)")

SERVERNAME = "columba.test"
USERS = {"alice": "wonderland", "bob": "builder", "admin": "s3cret",
         "quinn": "quota"}

MESSAGE = (b"From: Alice <alice@example.com>\r\n"
           b"To: bob@example.com\r\n"
           b"Subject: admin test\r\n"
           b"\r\n"
           b"Body\r\n")


@pytest.fixture(scope="module")
def server():
    port = free_port()
    inst = Instance(services=[("imap", {"cmd": program("imap/imapd"),
                                        "listen": f"127.0.0.1:{port}"})],
                    name="imapd-admin")
    sasldb = inst.path("sasldb2")
    for user, password in USERS.items():
        subprocess.run(["saslpasswd2", "-c", "-p", "-f", sasldb,
                        "-u", SERVERNAME, user],
                       input=password.encode(), check=True)
    os.chmod(sasldb, 0o644)
    other = inst.path("spool-other")
    os.makedirs(other, exist_ok=True)
    inst.options.update({
        "servername": SERVERNAME,
        "admins": "admin",
        "allowplaintext": "yes",
        "autocreate_quota": "100000",
        "sasl_pwcheck_method": "auxprop",
        "sasl_auxprop_plugin": "sasldb",
        "sasl_sasldb_path": sasldb,
        "sasl_mech_list": "PLAIN",
        "maxword": "4096",
        "maxmessagesize": "1M",
        "partition-other": other,
    })
    inst.write_imapd_conf()
    inst.start()
    inst.port = port
    yield inst
    inst.stop()
    inst.cleanup()


class Session:
    """A raw IMAP session: send a command, collect untagged lines (with
    literals inlined as bytes) and the tagged reply."""

    def __init__(self, server, user=None):
        self.c = server.connect(server.port)
        self.n = 0
        assert self.c.readline().startswith("* OK")
        if user:
            tagged = self.run(f"LOGIN {user} {USERS[user]}")[1]
            assert tagged.startswith("OK"), tagged

    def _readline_bytes(self):
        c = self.c
        while b"\n" not in c.buf:
            data = c.sock.recv(65536)
            if not data:
                raise EOFError("closed")
            c.buf += data
        line, c.buf = c.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def _read_exact(self, n):
        c = self.c
        while len(c.buf) < n:
            data = c.sock.recv(65536)
            if not data:
                raise EOFError("closed")
            c.buf += data
        out, c.buf = c.buf[:n], c.buf[n:]
        return out

    def read_response(self):
        """One response line with any literals inlined."""
        line = self._readline_bytes()
        while True:
            m = re.search(rb"~?\{(\d+)\}$", line)
            if not m:
                return line
            data = self._read_exact(int(m.group(1)))
            line = line + b"\r\n" + data + self._readline_bytes()

    def send(self, data):
        self.c.send(data)

    def tag(self):
        self.n += 1
        return f"t{self.n}"

    def finish(self, tag):
        untagged = []
        while True:
            line = self.read_response()
            text = line.decode("utf-8", errors="replace")
            if text.startswith(tag + " "):
                return untagged, text[len(tag) + 1:]
            untagged.append(text)

    def run(self, command):
        tag = self.tag()
        self.c.send_line(f"{tag} {command}")
        return self.finish(tag)

    def run_literals(self, parts):
        """Send `parts`: str pieces and (marker, bytes) literals, waiting
        for "+" before each synchronizing literal.  Returns as run()."""
        tag = self.tag()
        buf = (tag + " ").encode()
        for part in parts:
            if isinstance(part, str):
                buf += part.encode()
                continue
            prefix, data = part
            buf += f"{prefix}{{{len(data)}}}\r\n".encode()
            self.c.send(buf)
            buf = b""
            cont = self.read_response().decode(errors="replace")
            if not cont.startswith("+"):
                assert cont.startswith(tag + " "), cont
                return [], cont[len(tag) + 1:]
            self.c.send(data)
        self.c.send(buf + b"\r\n")
        return self.finish(tag)

    def close(self):
        try:
            self.run("LOGOUT")
        except (EOFError, OSError):
            pass
        self.c.close()


@pytest.fixture
def alice(server):
    s = Session(server, "alice")
    yield s
    s.close()


@pytest.fixture
def admin(server):
    s = Session(server, "admin")
    yield s
    s.close()


def list_names(untagged):
    out = {}
    for line in untagged:
        m = re.match(r'\* LIST \(([^)]*)\) "." (?:"((?:[^"\\]|\\.)*)"|(\S+))'
                     r'(.*)$', line)
        if m:
            out[m.group(2) if m.group(2) is not None else m.group(3)] = (
                m.group(1).split(), m.group(4))
    return out


# -- capabilities ------------------------------------------------------------

def test_capabilities(alice):
    untagged, tagged = alice.run("CAPABILITY")
    caps = untagged[0].split()
    for cap in ("LIST-EXTENDED", "LIST-STATUS", "LIST-MYRIGHTS",
                "SPECIAL-USE", "CREATE-SPECIAL-USE", "METADATA",
                "METADATA-SERVER", "QUOTA", "QUOTA=RES-STORAGE",
                "QUOTA=RES-MESSAGE", "QUOTA=RES-MAILBOX",
                "QUOTA=RES-ANNOTATION-STORAGE", "QUOTASET", "STATUS=SIZE",
                "MULTIAPPEND", "UTF8=ACCEPT", "ACL", "RIGHTS=kxten",
                "CHILDREN", "APPENDLIMIT=1048576"):
        assert cap in caps, cap
    assert tagged.startswith("OK")


# -- LIST-EXTENDED -----------------------------------------------------------

def test_list_children_and_multiple_patterns(alice):
    for name in ("Fruit", "Fruit/Apple", "Fruit/Banana", "Veg"):
        assert alice.run(f'CREATE "{name}"')[1].startswith("OK")
    untagged, tagged = alice.run('LIST "" ("Fruit" "Veg" "Fruit/%" "Fruit")')
    assert tagged.startswith("OK")
    names = list_names(untagged)
    assert "\\HasChildren" in names["Fruit"][0]
    assert "\\HasNoChildren" in names["Veg"][0]
    assert "\\HasNoChildren" in names["Fruit/Apple"][0]
    # each name once, even when two patterns match it
    assert sum(1 for l in untagged if l.endswith('"Fruit"')) == 1
    # RETURN (CHILDREN) is accepted; a plain LIST keeps working
    untagged, tagged = alice.run('LIST "" "Fruit" RETURN (CHILDREN)')
    assert tagged.startswith("OK") and "\\HasChildren" in untagged[0]
    untagged, tagged = alice.run('LIST "" "Fruit/*"')
    assert set(list_names(untagged)) == {"Fruit/Apple", "Fruit/Banana"}


def test_list_missing_parent(alice):
    assert alice.run('CREATE "Deep/Er/Est"')[1].startswith("OK")
    assert alice.run('LIST "" "Dee%"')[0][0].startswith(
        '* LIST (\\Noselect \\HasChildren)')
    untagged, _ = alice.run('LIST "" "Deep/%"')
    names = list_names(untagged)
    assert "\\Noselect" in names["Deep/Er"][0]
    untagged, _ = alice.run('LIST () "" "Deep/%"')
    assert "\\NonExistent" in list_names(untagged)["Deep/Er"][0]


def test_list_subscribed_and_recursivematch(alice):
    for name in ("Sub", "Sub/In", "Sub/Gone", "Other", "Other/Kid"):
        assert alice.run(f'CREATE "{name}"')[1].startswith("OK")
    for name in ("Sub", "Sub/Gone", "Other/Kid"):
        assert alice.run(f'SUBSCRIBE "{name}"')[1].startswith("OK")
    assert alice.run('DELETE "Sub/Gone"')[1].startswith("OK")
    untagged, tagged = alice.run('LIST (SUBSCRIBED) "" "*"')
    assert tagged.startswith("OK")
    names = list_names(untagged)
    assert "\\Subscribed" in names["Sub"][0]
    assert "Sub/In" not in names
    assert set(names["Sub/Gone"][0]) >= {"\\Subscribed", "\\NonExistent"}
    assert "\\Subscribed" in names["Other/Kid"][0]

    untagged, tagged = alice.run('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"'
                                 ' RETURN (CHILDREN)')
    assert tagged.startswith("OK")
    names = list_names(untagged)
    assert "Other" in names and "\\Subscribed" not in names["Other"][0]
    assert 'CHILDINFO' in names["Other"][1]
    assert "\\Subscribed" in names["Sub"][0] and "CHILDINFO" in names["Sub"][1]

    untagged, tagged = alice.run('LIST "" "Sub*" RETURN (SUBSCRIBED)')
    names = list_names(untagged)
    assert "\\Subscribed" in names["Sub"][0]
    assert "\\Subscribed" not in names["Sub/In"][0]

    # RECURSIVEMATCH alone is a syntax error (RFC 5258 3.1)
    assert alice.run('LIST (RECURSIVEMATCH) "" "*"')[1].startswith("BAD")
    assert alice.run('LIST (BOGUS) "" "*"')[1].startswith("BAD")
    assert alice.run('LIST "" "*" RETURN (BOGUS)')[1].startswith("BAD")
    # LSUB is unchanged
    untagged, tagged = alice.run('LSUB "" "*"')
    assert tagged.startswith("OK")
    assert any(l.endswith('"Sub"') for l in untagged)


def test_special_use(alice):
    untagged, tagged = alice.run('CREATE "MyDrafts" (USE (\\Drafts))')
    assert tagged.startswith("OK [MAILBOXID ("), tagged
    assert alice.run('CREATE "Junky"')[1].startswith("OK")
    assert alice.run('SETMETADATA "Junky" (/private/specialuse "\\\\junk")'
                     )[1].startswith("OK")
    untagged, tagged = alice.run('LIST (SPECIAL-USE) "" "*"')
    names = list_names(untagged)
    assert set(names) == {"MyDrafts", "Junky"}
    assert "\\Drafts" in names["MyDrafts"][0]
    assert "\\Junk" in names["Junky"][0]
    untagged, _ = alice.run('LIST "" "Junky" RETURN (SPECIAL-USE)')
    assert "\\Junk" in untagged[0]
    untagged, _ = alice.run('GETMETADATA "MyDrafts" /private/specialuse')
    assert untagged == ['* METADATA "MyDrafts" ("/private/specialuse"'
                        ' "\\\\Drafts")']
    reply = alice.run('CREATE "Bad" (USE (\\Bogus))')[1]
    assert reply.startswith("NO [USEATTR]")
    assert alice.run('LIST "" "Bad"')[0] == []


def test_list_status_and_myrights(alice):
    _, tagged = alice.run_literals(["APPEND INBOX ", ("", MESSAGE)])
    assert tagged.startswith("OK [APPENDUID")
    untagged, tagged = alice.run(
        'LIST "" "INBOX" RETURN (STATUS (MESSAGES UIDNEXT SIZE) MYRIGHTS)')
    assert tagged.startswith("OK")
    assert untagged[0].startswith("* LIST (")
    status = [l for l in untagged if l.startswith('* STATUS "INBOX"')]
    assert status and "MESSAGES" in status[0] and "SIZE" in status[0]
    rights = [l for l in untagged if l.startswith("* MYRIGHTS")]
    assert rights and re.match(r'\* MYRIGHTS "?INBOX"? "?l', rights[0])


def test_list_hostile_patterns(alice):
    deep = "%/" * 300 + "%"
    start = time.monotonic()
    untagged, tagged = alice.run(f'LIST "" "{deep}"')
    assert tagged.startswith("OK") and time.monotonic() - start < 5
    assert alice.run('LIST "" "' + "a" * 2000 + '"')[1].startswith("BAD")
    many = " ".join(['"x%d"' % i for i in range(40)])
    assert alice.run(f'LIST "" ({many})')[1].startswith("BAD")
    assert alice.run('LIST "" ("a"')[1].startswith("BAD")
    assert alice.run("NOOP")[1].startswith("OK")


def test_list_admin_range(admin):
    for name in ("user/zed", "user/zed/One", "user/zoe"):
        assert admin.run(f'CREATE "{name}"')[1].startswith("OK")
    untagged, tagged = admin.run('LIST "" "user/zed/%"')
    assert tagged.startswith("OK")
    assert set(list_names(untagged)) == {"user/zed/One"}
    untagged, tagged = admin.run('LIST "" "user/z%"')
    assert {"user/zed", "user/zoe"} <= set(list_names(untagged))


# -- METADATA ----------------------------------------------------------------

def test_metadata_roundtrip(alice):
    r = alice.run('SETMETADATA INBOX (/private/comment "mine"'
                  ' /shared/comment "ours")')
    assert r[1].startswith("OK"), r
    untagged, tagged = alice.run(
        'GETMETADATA INBOX (/private/comment /shared/comment)')
    assert tagged.startswith("OK")
    assert untagged == ['* METADATA "INBOX" ("/private/comment" "mine"'
                        ' "/shared/comment" "ours")']
    untagged, tagged = alice.run('GETMETADATA (DEPTH infinity) INBOX'
                                 ' /private')
    assert '"/private/comment" "mine"' in untagged[0]
    untagged, tagged = alice.run('GETMETADATA (MAXSIZE 2) INBOX'
                                 ' /private/comment')
    assert untagged == [] and tagged.startswith("OK [METADATA LONGENTRIES 4]")
    # NIL deletes
    assert alice.run('SETMETADATA INBOX (/private/comment NIL)'
                     )[1].startswith("OK")
    untagged, _ = alice.run('GETMETADATA INBOX /private/comment')
    assert untagged == ['* METADATA "INBOX" ("/private/comment" NIL)']
    # cyradm's wildcard form
    untagged, tagged = alice.run('GETMETADATA INBOX ("/shared/*")')
    assert tagged.startswith("OK")
    assert '"/shared/comment" "ours"' in untagged[0]


def test_metadata_binary_and_limits(alice):
    value = b"bin\x00ary\xff"
    _, tagged = alice.run_literals(
        ["SETMETADATA INBOX (/private/comment ", ("~", value), ")"])
    assert tagged.startswith("OK"), tagged
    untagged, _ = alice.run('GETMETADATA INBOX /private/comment')
    assert "~{8}" in untagged[0]
    # a value over the limit is refused, and the session carries on
    big = b"x" * (64 * 1024 + 1)
    _, tagged = alice.run_literals(
        ["SETMETADATA INBOX (/private/comment ", ("", big), ")"])
    assert "TOOBIG" in tagged or "MAXSIZE" in tagged
    assert alice.run("NOOP")[1].startswith("OK")
    many = " ".join('/private/e%d "v"' % i for i in range(150))
    _, tagged = alice.run(f"SETMETADATA INBOX ({many})")
    assert tagged.startswith("NO [METADATA TOOMANY]"), tagged
    untagged, _ = alice.run('GETMETADATA INBOX /private/e1')
    assert untagged == ['* METADATA "INBOX" ("/private/e1" NIL)']
    assert alice.run('SETMETADATA INBOX (/private/c*x "v")'
                     )[1].startswith(("NO", "BAD"))
    assert alice.run('SETMETADATA INBOX (noscope "v")'
                     )[1].startswith(("NO", "BAD"))
    assert alice.run("NOOP")[1].startswith("OK")


def test_metadata_server_and_permissions(alice, admin):
    assert alice.run('SETMETADATA "" (/shared/comment "no")'
                     )[1].startswith("NO [NOPERM]")
    assert admin.run('SETMETADATA "" (/shared/comment "Hello")'
                     )[1].startswith("OK")
    untagged, tagged = alice.run('GETMETADATA "" /shared/comment')
    assert untagged == ['* METADATA "" ("/shared/comment" "Hello")']
    # someone else's mailbox is invisible to alice
    assert alice.run('GETMETADATA "Other Users/bob" /shared/comment'
                     )[1].startswith("NO")


def test_metadata_cyrus_vendor_entries(admin):
    assert admin.run('CREATE "user/vendor"')[1].startswith("OK")
    ent = "/shared/vendor/cmu/cyrus-imapd/"
    assert admin.run(f'SETMETADATA "user/vendor" ({ent}expire "30")'
                     )[1].startswith("OK")
    assert admin.run(f'SETMETADATA "user/vendor" ({ent}expire "soon")'
                     )[1].startswith("NO")
    assert admin.run(f'SETMETADATA "user/vendor" ({ent}partition "x")'
                     )[1].startswith("NO")
    untagged, tagged = admin.run(
        f'GETMETADATA "user/vendor" ({ent}expire {ent}partition'
        f' {ent}size)')
    assert tagged.startswith("OK")
    assert f'"{ent}expire" "30"' in untagged[0]
    assert f'"{ent}partition" "default"' in untagged[0]
    assert f'"{ent}size" "0"' in untagged[0]


def test_annotatemore_commands(alice):
    r = alice.run('SETANNOTATION INBOX "/comment" ("value.shared" "old")')
    assert r[1].startswith("OK"), r
    untagged, tagged = alice.run('GETANNOTATION INBOX "/comment"'
                                 ' "value.shared"')
    assert tagged.startswith("OK")
    assert untagged == ['* ANNOTATION "INBOX" "/comment" ("value.shared"'
                        ' "old")']
    untagged, tagged = alice.run('GETANNOTATION INBOX "*" ("value.shared"'
                                 ' "size.shared")')
    assert '"size.shared" "3"' in " ".join(untagged)
    assert alice.run('GETANNOTATION INBOX "*" "bogus"')[1].startswith("BAD")


# -- ACL ---------------------------------------------------------------------

def test_acl_commands(server, alice, admin):
    assert alice.run('CREATE "Shared"')[1].startswith("OK")
    assert alice.run('SETACL "Shared" bob lrs')[1].startswith("OK")
    assert alice.run('SETACL "Shared" bob +w')[1].startswith("OK")
    untagged, _ = alice.run('GETACL "Shared"')
    assert re.search(r'"?bob"? "?lrsw"?', untagged[0]), untagged
    untagged, tagged = alice.run('LISTRIGHTS "Shared" bob')
    assert tagged.startswith("OK")
    assert untagged[0].startswith('* LISTRIGHTS "Shared" bob "" l r')
    assert alice.run('DELETEACL "Shared" bob')[1].startswith("OK")
    untagged, _ = alice.run('GETACL "Shared"')
    assert "bob" not in untagged[0]
    untagged, _ = alice.run('MYRIGHTS "Shared"')
    assert untagged[0].startswith('* MYRIGHTS "Shared" ')
    # LISTRIGHTS needs the a right
    bob = Session(server, "bob")
    try:
        assert bob.run('LISTRIGHTS "Other Users/alice/Shared" bob'
                       )[1].startswith("NO")
    finally:
        bob.close()
    assert admin.run('LISTRIGHTS "user/alice" anyone')[1].startswith("OK")


# -- QUOTA -------------------------------------------------------------------

def test_quota_resources_and_removal(server, admin):
    q = Session(server, "quinn")
    q.close()
    reply = admin.run('SETQUOTA "user/quinn" (STORAGE 1000 MESSAGE 50'
                      ' MAILBOX 20 ANNOTATION-STORAGE 1)')
    assert reply[1].startswith("OK")
    line = reply[0][0]
    for res in ("STORAGE 0 1000", "MESSAGE 0 50", "MAILBOX",
                "ANNOTATION-STORAGE 0 1 ", "MAILBOX 1 20"):
        assert res in line, line
    untagged, _ = admin.run('GETQUOTAROOT "user/quinn"')
    assert untagged[0].startswith('* QUOTAROOT "user/quinn" "user/quinn"')
    # ANNOTATION-STORAGE is enforced on SETMETADATA
    q = Session(server, "quinn")
    try:
        big = "v" * 2000
        _, tagged = q.run(f'SETMETADATA INBOX (/private/comment "{big}")')
        assert tagged.startswith("NO [OVERQUOTA]"), tagged
        assert q.run('SETMETADATA INBOX (/private/comment "small")'
                     )[1].startswith("OK")
    finally:
        q.close()
    # a subset drops the other limits
    reply = admin.run('SETQUOTA "user/quinn" (MESSAGE 7)')
    assert reply[0] == ['* QUOTA "user/quinn" (MESSAGE 0 7)']
    # an empty list removes the root
    assert admin.run('SETQUOTA "user/quinn" ()')[1].startswith("OK")
    assert admin.run('GETQUOTA "user/quinn"')[1].startswith("NO")
    assert admin.run('SETQUOTA "user/quinn" (BOGUS 1)')[1].startswith("BAD")


def test_status_items(alice):
    _, tagged = alice.run_literals(["APPEND Stat (\\Deleted) ",
                                    ("", MESSAGE)])
    assert tagged.startswith("NO [TRYCREATE]")
    assert alice.run('CREATE Stat')[1].startswith("OK")
    _, tagged = alice.run_literals(["APPEND Stat (\\Deleted) ",
                                    ("", MESSAGE)])
    assert tagged.startswith("OK")
    untagged, tagged = alice.run(
        "STATUS Stat (MESSAGES SIZE DELETED DELETED-STORAGE APPENDLIMIT)")
    assert tagged.startswith("OK")
    size = len(MESSAGE)
    assert untagged == [f"* STATUS Stat (MESSAGES 1 DELETED 1 SIZE {size}"
                        f" DELETED-STORAGE {size} APPENDLIMIT 1048576)"] or (
        all(x in untagged[0] for x in (f"SIZE {size}", "DELETED 1",
                                       f"DELETED-STORAGE {size}",
                                       "APPENDLIMIT 1048576")))


# -- APPEND ------------------------------------------------------------------

def test_multiappend(alice):
    assert alice.run("CREATE Multi")[1].startswith("OK")
    _, tagged = alice.run_literals(
        ["APPEND Multi (\\Seen) ", ("", MESSAGE), " ", ("", MESSAGE),
         ' (\\Flagged) "04-Dec-2026 10:00:00 +0000" ', ("", MESSAGE)])
    m = re.match(r"OK \[APPENDUID (\d+) 1:3\]", tagged)
    assert m, tagged
    untagged, _ = alice.run("STATUS Multi (MESSAGES)")
    assert untagged == ['* STATUS "Multi" (MESSAGES 3)']


def test_multiappend_all_or_nothing(server, admin):
    q = Session(server, "quinn")
    try:
        assert admin.run('SETQUOTA "user/quinn" (MESSAGE 1)'
                         )[1].startswith("OK")
        _, tagged = q.run_literals(["APPEND INBOX ", ("", MESSAGE), " ",
                                    ("", MESSAGE)])
        assert tagged.startswith("NO"), tagged
        assert "OVERQUOTA" in tagged
        untagged, _ = q.run("STATUS INBOX (MESSAGES)")
        assert untagged == ['* STATUS "INBOX" (MESSAGES 0)']
        _, tagged = q.run_literals(["APPEND INBOX ", ("", MESSAGE)])
        assert tagged.startswith("OK")
    finally:
        admin.run('SETQUOTA "user/quinn" ()')
        q.close()


def test_binary_append_and_limit(alice):
    body = b"Subject: bin\r\n\r\nraw\x00bytes\r\n"
    _, tagged = alice.run_literals(["APPEND INBOX ", ("~", body)])
    assert tagged.startswith("OK [APPENDUID"), tagged
    _, tagged = alice.run_literals(["APPEND INBOX ",
                                    ("", b"x" * (1024 * 1024 + 1))])
    assert "TOOBIG" in tagged
    assert alice.run("NOOP")[1].startswith("OK")
    # a message just under the limit goes through
    big = b"Subject: big\r\n\r\n" + b"y" * (1024 * 1024 - 64)
    _, tagged = alice.run_literals(["APPEND INBOX ", ("", big)])
    assert tagged.startswith("OK"), tagged


def test_utf8_accept(server, alice):
    untagged, tagged = alice.run("ENABLE UTF8=ACCEPT")
    assert untagged == ["* ENABLED UTF8=ACCEPT"]
    name = "Größe"
    assert alice.run(f'CREATE "{name}"')[1].startswith("OK")
    untagged, _ = alice.run('LIST "" "Gr*"')
    assert any(name in l for l in untagged), untagged
    body = "Subject: héllo\r\n\r\nçà\r\n".encode()
    _, tagged = alice.run_literals([f'APPEND "{name}" UTF8 (', ("~", body),
                                    ")"])
    assert tagged.startswith("OK [APPENDUID"), tagged
    other = Session(server, "alice")
    try:
        untagged, _ = other.run('LIST "" "Gr*"')
        assert any("Gr&AQ4A9g-e" in l or "Gr&APYA3w-e" in l
                   for l in untagged), untagged
    finally:
        other.close()


# -- admin commands ----------------------------------------------------------

def test_create_with_partition(alice, admin):
    reply = admin.run('CREATE "user/erin" other')[1]
    assert reply.startswith("OK [MAILBOXID ("), reply
    ent = "/shared/vendor/cmu/cyrus-imapd/partition"
    untagged, _ = admin.run(f'GETMETADATA "user/erin" {ent}')
    assert f'"{ent}" "other"' in untagged[0]
    assert admin.run('CREATE "user/fay" (PARTITION other)'
                     )[1].startswith("OK")
    untagged, _ = admin.run(f'GETMETADATA "user/fay" {ent}')
    assert f'"{ent}" "other"' in untagged[0]
    assert admin.run('CREATE "user/gus" "../../etc"'
                     )[1].startswith("NO [CANNOT]")
    assert admin.run('CREATE "user/gus" nosuchpart')[1].startswith("NO")
    assert admin.run('CREATE "user/gus" (PARTITION "' + "p" * 300 + '")'
                     )[1].startswith("NO")
    assert alice.run('CREATE "Mine" other')[1].startswith("NO")
    assert admin.run('RENAME "user/fay" "user/fay2" default'
                     )[1].startswith("OK")
    untagged, _ = admin.run(f'GETMETADATA "user/fay2" {ent}')
    assert f'"{ent}" "default"' in untagged[0]
    assert admin.run('RENAME "user/fay2" "user/fay3" "a/b"'
                     )[1].startswith("NO")


def test_xfer_and_reconstruct(alice, admin):
    tagged = admin.run('XFER "user/alice" backend2')[1]
    assert tagged.startswith("NO") and "murder" in tagged
    assert alice.run('XFER "INBOX" backend2')[1].startswith("NO")
    assert admin.run('RECONSTRUCT "user/alice"')[1].startswith("OK")
    assert admin.run('RECONSTRUCT "user/alice" RECURSIVE'
                     )[1].startswith("OK")
    assert admin.run('RECONSTRUCT "user/nobody"')[1].startswith("NO")
    assert alice.run('RECONSTRUCT INBOX')[1].startswith("NO [NOPERM]")
    assert alice.run("NOOP")[1].startswith("OK")


def test_imaplib_still_works(server):
    m = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    m.login("bob", USERS["bob"])
    typ, data = m.list()
    assert typ == "OK" and any(b"INBOX" in d for d in data)
    typ, data = m.myrights("INBOX")
    assert typ == "OK"
    m.logout()
