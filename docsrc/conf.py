# Sphinx configuration for Columba's administrator documentation: the
# HTML manual and one man page per daemon, tool and configuration file.
# Columba is free software; see COPYING for the licence.
#
# Build with `make doc` (HTML into doc/html, man pages into doc/man of
# the build directory), or by hand:
#     sphinx-build -W -b html docsrc /tmp/html
#     sphinx-build -W -b man docsrc /tmp/man

import os
import re

_here = os.path.dirname(os.path.abspath(__file__))


def _version():
    """The version from AC_INIT in configure.ac, so the manual and the
    programs never disagree."""
    try:
        with open(os.path.join(_here, "..", "configure.ac")) as f:
            m = re.search(r"AC_INIT\(\[[^]]*\],\s*\[([^]]+)\]", f.read())
            if m:
                return m.group(1)
    except OSError:
        pass
    return "unknown"


project = "Columba"
author = "the Columba developers"
copyright = "the Columba developers"
version = _version()
release = version

extensions = []
master_doc = "index"
root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build", "local.mk"]
templates_path = []
highlight_language = "none"
pygments_style = "sphinx"
today_fmt = "%Y-%m-%d"

# HTML: Sphinx's own theme, so Debian's python3-sphinx is all it takes.
html_theme = "alabaster"
html_title = "Columba %s administrator's guide" % version
html_static_path = []
html_show_sourcelink = False

# Man pages: (source, name, description, authors, section).  Every daemon
# and tool the build installs must have one here; tests/test_docs.py
# checks that against the build's program lists.
_MAN = "reference/man/"
_DAEMONS = [
    ("master", "supervise the Columba services"),
    ("imapd", "IMAP server"),
    ("pop3d", "POP3 server"),
    ("lmtpd", "LMTP delivery server"),
    ("timsieved", "ManageSieve server"),
]
_TOOLS = [
    ("deliver", "deliver a message from standard input to mailboxes"),
    ("ctl_cyrusdb", "recover, checkpoint or check the system databases"),
    ("cyr_dbtool", "inspect and change one database"),
    ("cvt_cyrusdb", "convert a database to another backend"),
    ("ctl_mboxlist", "dump and load the mailbox list"),
    ("quota", "report and fix quota usage"),
    ("ipurge", "delete messages by age or size"),
    ("cyr_expire", "expire duplicate records, expunged messages and "
                   "deleted mailboxes"),
    ("unexpunge", "list and restore expunged messages"),
    ("cyr_deny", "deny users access to services"),
    ("reconstruct", "rebuild mailbox metadata"),
    ("mbpath", "print the file system paths of mailboxes"),
    ("mbexamine", "print the metadata of mailboxes"),
    ("cyr_info", "print and check the configuration"),
    ("cyr_buildinfo", "print how Columba was built"),
    ("sievec", "compile a Sieve script"),
]
_SHELLS = [
    ("cyradm", "administer mailboxes, ACLs and quotas over IMAP"),
    ("sieveshell", "manage Sieve scripts over ManageSieve"),
]

man_pages = (
    [(_MAN + name, name, desc, [author], 8) for name, desc in _DAEMONS]
    + [(_MAN + name, name, desc, [author], 8) for name, desc in _TOOLS]
    + [(_MAN + name, name, desc, [author], 1) for name, desc in _SHELLS]
    + [("reference/imapd.conf", "imapd.conf",
        "configuration of the Columba services", [author], 5),
       ("reference/cyrus.conf", "cyrus.conf",
        "service table of the Columba master", [author], 5)]
)
man_show_urls = False
man_make_section_directory = False
