"""End-to-end tests of imapd's UNAUTHENTICATE (RFC 8437) and SASL proxy
authorization (an authzid other than the authcid, allowed only for
`proxyservers` and admins), with imaplib against a real master."""

import base64
import hashlib
import hmac
import imaplib
import os
import shutil
import ssl
import subprocess
import zlib

import pytest

from columba import Instance, free_port, program

pytestmark = pytest.mark.skipif(
    not shutil.which("saslpasswd2") or not shutil.which("openssl"),
    reason="needs saslpasswd2 (sasl2-bin) and openssl")

SERVERNAME = "columba.test"
USERS = {"alice": "wonderland", "bob": "builder", "admin": "s3cret",
         "proxy": "relay"}


@pytest.fixture(scope="module")
def server():
    port = free_port()
    inst = Instance(services=[("imap", {"cmd": program("imap/imapd"),
                                        "listen": f"127.0.0.1:{port}"})],
                    name="imapd-auth")
    sasldb = inst.path("sasldb2")
    for user, password in USERS.items():
        subprocess.run(["saslpasswd2", "-c", "-p", "-f", sasldb,
                        "-u", SERVERNAME, user],
                       input=password.encode(), check=True)
    cert, key = inst.path("server.pem"), inst.path("server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "2", "-subj", "/CN=" + SERVERNAME,
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    inst.options.update({
        "tls_server_cert": cert,
        "tls_server_key": key,
        "servername": SERVERNAME,
        "admins": "admin",
        "proxyservers": "proxy",
        "allowplaintext": "yes",
        "autocreate_quota": "0",
        "failedloginpause": "0",
        "sasl_pwcheck_method": "auxprop",
        "sasl_auxprop_plugin": "sasldb",
        "sasl_sasldb_path": sasldb,
        "sasl_mech_list": "PLAIN SCRAM-SHA-1",
    })
    inst.write_imapd_conf()
    inst.start()
    inst.port = port
    # A marker folder in each INBOX tells whose INBOX a session sees.
    adm = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    adm.login("admin", USERS["admin"])
    for user in ("alice", "bob"):
        assert adm.create(f"user/{user}")[0] == "OK"
        assert adm.create(f"user/{user}/mark-{user}")[0] == "OK"
    adm.logout()
    yield inst
    inst.stop()
    inst.cleanup()


def raw(server):
    c = server.connect(server.port)
    assert c.readline().startswith("* OK")
    return c


def tagged(c, tag):
    lines = []
    while True:
        line = c.readline()
        lines.append(line)
        if line.startswith(tag + " "):
            return lines


def plain(authzid, authcid, password):
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}"
                            .encode()).decode()


class ScramSha1:
    """The client side of SASL SCRAM-SHA-1 (RFC 5802), without channel
    binding; also used by test_lmtpd.py."""

    def __init__(self, user, password):
        self.user, self.password = user, password
        self.bare = "n=%s,r=%s" % (user, base64.b64encode(
            os.urandom(12)).decode())

    def first(self):
        return base64.b64encode(("n,," + self.bare).encode()).decode()

    def final(self, server_first_b64):
        server_first = base64.b64decode(server_first_b64).decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha1", self.password.encode(),
                                     base64.b64decode(attrs["s"]),
                                     int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha1").digest()
        without_proof = "c=biws,r=" + attrs["r"]
        message = ",".join((self.bare, server_first, without_proof))
        signature = hmac.new(hashlib.sha1(client_key).digest(),
                             message.encode(), "sha1").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        return base64.b64encode((without_proof + ",p=" + base64.b64encode(
            proof).decode()).encode()).decode()


def inbox_owner(c, tag):
    """The marker folder the session lists names its owner
    ("mark-alice")."""
    c.send_line(f'{tag} LIST "" "mark-*"')
    lines = tagged(c, tag)
    assert lines[-1].startswith(f"{tag} OK"), lines
    return " ".join(lines[:-1])


def test_unauthenticate_capability_only_after_login(server):
    c = raw(server)
    c.send_line("a CAPABILITY")
    assert "UNAUTHENTICATE" not in tagged(c, "a")[0].split()
    assert c.command("b UNAUTHENTICATE").startswith("b BAD")
    assert c.command("c LOGIN alice wonderland").startswith("c OK")
    c.send_line("d CAPABILITY")
    assert "UNAUTHENTICATE" in tagged(c, "d")[0].split()
    c.close()


def test_unauthenticate_then_other_user(server):
    c = raw(server)
    assert c.command("a LOGIN alice wonderland").startswith("a OK")
    c.send_line("b SELECT INBOX")
    assert tagged(c, "b")[-1].startswith("b OK")
    c.send_line("c ENABLE CONDSTORE")
    assert tagged(c, "c")[-1].startswith("c OK")

    assert c.command("d UNAUTHENTICATE") == "d OK Completed"
    # Not authenticated again: mailbox commands refused, login offered.
    assert c.command("e SELECT INBOX").startswith("e BAD")
    c.send_line("f CAPABILITY")
    caps = tagged(c, "f")[0].split()
    assert "AUTH=PLAIN" in caps and "UNAUTHENTICATE" not in caps

    # A new SASL exchange works on the same connection.
    c.send_line("g AUTHENTICATE PLAIN " + plain("", "bob", "builder"))
    assert tagged(c, "g")[-1].startswith("g OK")
    assert "mark-bob" in inbox_owner(c, "h")
    # ENABLE state was reset: CONDSTORE is newly enabled for bob.
    c.send_line("i ENABLE CONDSTORE")
    assert tagged(c, "i")[0] == "* ENABLED CONDSTORE"
    c.close()
    server.wait_for_log(r"unauthenticate.*user=alice")


def test_proxy_authorization_for_proxyservers(server):
    c = raw(server)
    c.send_line("a AUTHENTICATE PLAIN " + plain("alice", "proxy", "relay"))
    assert tagged(c, "a")[-1].startswith("a OK")
    assert "mark-alice" in inbox_owner(c, "b")
    c.close()
    server.wait_for_log(r"login.*user=alice authcid=proxy mech=PLAIN")


def test_proxy_authorization_for_admins(server):
    m = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    typ, _ = m.authenticate("PLAIN", lambda _: b"bob\0admin\0s3cret")
    assert typ == "OK"
    typ, data = m.list('""', "mark-*")
    assert typ == "OK" and b"mark-bob" in data[0]
    m.logout()


def test_proxy_authorization_refused_for_ordinary_user(server):
    c = raw(server)
    c.send_line("a AUTHENTICATE PLAIN " + plain("alice", "bob", "builder"))
    reply = tagged(c, "a")[-1]
    assert reply.startswith("a NO")
    c.send_line("b AUTHENTICATE PLAIN " + plain("bob", "bob", "builder"))
    assert tagged(c, "b")[-1].startswith("b OK")
    c.close()
    server.wait_for_log(r"proxy authorization denied.*user=bob "
                        r"authzid=alice")
    assert "builder" not in server.log()


def test_proxyserver_may_not_become_admin(server):
    c = raw(server)
    c.send_line("a AUTHENTICATE PLAIN " + plain("admin", "proxy", "relay"))
    assert tagged(c, "a")[-1].startswith("a NO")
    # Not by another spelling either (username_tolower).
    c.send_line("b AUTHENTICATE PLAIN " + plain("ADMIN", "proxy", "relay"))
    assert tagged(c, "b")[-1].startswith("b NO")
    c.close()
    server.wait_for_log(r"proxy authorization denied.*user=proxy "
                        r"authzid=admin")


def test_cancelled_exchange_leaves_no_login_behind(server):
    # SCRAM sends its last step as a challenge; cancelling there must not
    # let the next AUTHENTICATE in without credentials (Cyrus SASL
    # remembers the finished step on the context).
    c = raw(server)
    scram = ScramSha1("alice", "wonderland")
    c.send_line("a AUTHENTICATE SCRAM-SHA-1 " + scram.first())
    challenge = c.readline()
    assert challenge.startswith("+ ")
    c.send_line(scram.final(challenge[2:].strip()))
    assert c.readline().startswith("+ ")      # server-final, v=...
    c.send_line("*")
    assert tagged(c, "a")[-1].startswith("a BAD")
    c.send_line("b AUTHENTICATE PLAIN " + plain("", "bob", "wrong"))
    assert tagged(c, "b")[-1].startswith("b NO")
    assert c.command("c SELECT INBOX").startswith("c BAD")
    # The full exchange still works on the same connection.
    scram = ScramSha1("alice", "wonderland")
    c.send_line("d AUTHENTICATE SCRAM-SHA-1 " + scram.first())
    challenge = c.readline()
    c.send_line(scram.final(challenge[2:].strip()))
    assert c.readline().startswith("+ ")
    c.send_line("")
    assert tagged(c, "d")[-1].startswith("d OK")
    assert "mark-alice" in inbox_owner(c, "e")
    c.close()


def test_starttls_discards_pipelined_plaintext(server):
    # The classic STARTTLS command injection: a LOGIN sent in plaintext
    # behind STARTTLS must not run inside the TLS session.
    c = raw(server)
    c.send(b"a STARTTLS\r\nb LOGIN alice wonderland\r\n")
    assert c.readline().startswith("a OK")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(c.sock, server_hostname=SERVERNAME)
    t.sendall(b"c SELECT INBOX\r\n")
    assert t.makefile("rb").readline().startswith(b"c BAD")
    t.close()
    server.wait_for_log(r"plaintext after STARTTLS discarded")


def test_starttls_refused_under_compression(server):
    # LOGIN, COMPRESS, UNAUTHENTICATE reaches the not-authenticated state
    # with compression on; TLS cannot go under it, so STARTTLS is refused
    # and the compressed session goes on.
    c = raw(server)
    assert c.command("a LOGIN alice wonderland").startswith("a OK")
    assert c.command("b COMPRESS DEFLATE").startswith("b OK")
    deflate = zlib.compressobj(wbits=-15)
    inflate = zlib.decompressobj(wbits=-15)

    def command(line):
        c.sock.sendall(deflate.compress(line.encode() + b"\r\n")
                       + deflate.flush(zlib.Z_SYNC_FLUSH))
        got = b""
        while not got.endswith(b"\r\n"):
            got += inflate.decompress(c.sock.recv(65536))
        return got.decode()

    assert command("c UNAUTHENTICATE").startswith("c OK")
    assert command("d STARTTLS").startswith("d NO [COMPRESSIONACTIVE]")
    assert command("e LOGIN bob builder").startswith("e OK")
    c.close()
