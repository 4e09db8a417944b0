#!/usr/bin/perl
# cyradm: the IMAP administration shell, with Cyrus cyradm's command
# names, aliases, flags and output formats, built on Mail::IMAPClient.
# Columba is free software; see COPYING for the licence.

use strict;
use warnings;

use Getopt::Long qw(GetOptionsFromArray);
use MIME::Base64 qw(encode_base64);
use IO::Socket::IP;
use POSIX qw();
use Mail::IMAPClient;

our $VERSION = '0.1.0';

# ---- IMAP response parsing ----
#
# Mail::IMAPClient hands back a command's server output as a list of
# pieces: each line ending in CRLF, except that a line holding a literal
# is cut at the literal, whose bytes come as the next piece without the
# "{n}" marker.  rebuild_output() puts the markers back so that one
# parser reads strings, literals and parenthesised lists the same way.

# The raw server text of the last command (without the command itself).
sub rebuild_output
{
    my ($imap) = @_;
    my @pieces = $imap->History;
    my $text = '';
    my $literal_next = 0;

    for my $piece (@pieces) {
        next unless defined $piece;
        if ($literal_next) {
            $text .= '{' . length($piece) . "}\r\n" . $piece;
            $literal_next = 0;
            next;
        }
        $text .= $piece;
        $literal_next = $piece !~ /\n\z/;
    }
    return $text;
}

# Read one token at pos($$textref): an atom (NIL becomes undef), a
# quoted string, a literal or a parenthesised list (an array ref).
# Returns (1, value), or () at the end of the line.
sub read_token
{
    my ($textref) = @_;

    $$textref =~ /\G */gc;
    if ($$textref =~ /\G\(/gc) {
        my @list;
        for (;;) {
            $$textref =~ /\G */gc;
            last if $$textref =~ /\G\)/gc;
            my ($ok, $value) = read_token($textref);
            last unless $ok;
            push @list, $value;
        }
        return (1, \@list);
    }
    if ($$textref =~ /\G"((?:[^"\\\r\n]|\\.)*)"/gc) {
        my $s = $1;
        $s =~ s/\\(.)/$1/g;
        return (1, $s);
    }
    if ($$textref =~ /\G\{(\d+)\+?\}\r\n/gc) {
        my $len = $1;
        my $start = pos($$textref);
        my $s = substr($$textref, $start, $len);
        pos($$textref) = $start + length($s);
        return (1, $s);
    }
    if ($$textref =~ /\G([^\s()"{]+|\{)/gc) {
        return (1, uc($1) eq 'NIL' ? undef : $1);
    }
    return ();
}

# Split server output into untagged responses, each an array ref of
# tokens without the leading "*".
sub parse_untagged
{
    my ($text) = @_;
    my @responses;

    pos($text) = 0;
    while (pos($text) < length($text)) {
        if ($text =~ /\G\* /gc) {
            my @tokens;
            for (;;) {
                my ($ok, $value) = read_token(\$text);
                last unless $ok;
                push @tokens, $value;
            }
            push @responses, \@tokens;
        }
        # skip the rest of this line (tagged status, continuation)
        $text =~ /\G[^\n]*\n?/gc or last;
    }
    return @responses;
}

# ---- session state ----

my %opt = (
    port => undef,
    auth => undef,
    user => undef,
    authz => undef,
    password => undef,
    tls => undef,
    ssl => 0,
    cafile => undef,
    cadir => undef,
    tlskey => undef,
    rc => 1,
);
my $imap;                       # Mail::IMAPClient, undef when not connected
my $server_name;                # as the user typed it, for the prompt
my %caps;                       # upper-cased capability words
my $last_status = 0;            # of the last command, for exit
my $prev_status = 0;            # of the one before, for "exit" itself
my $is_interactive = -t STDIN;

sub err
{
    my ($cmd, $text) = @_;
    $text =~ s/\s+\z//;
    print STDERR "$cmd: $text\n";
    $last_status = 1;
    return;
}

# The server's reason for the failure of the last command, without tag.
sub server_error
{
    my $e = $imap ? ($imap->LastError // '') : '';

    $e =~ s/\r?\n.*//s;
    $e =~ s/^\S+\s+(?:NO|BAD)\s+//i;
    $e = 'command failed' if $e eq '';
    return $e;
}

# An IMAP string for `s`: quoted, or a literal when it holds line breaks,
# NULs or 8-bit bytes (Mail::IMAPClient waits for the continuation).
sub quote_str
{
    my ($s) = @_;

    return '{' . length($s) . "}\r\n" . $s
        if $s =~ /[\r\n\0]/ || $s =~ /[^\x00-\x7f]/;
    $s =~ s/(["\\])/\\$1/g;
    return qq("$s");
}

# Run one IMAP command; returns the untagged responses (array ref), or
# undef after reporting the failure as "<cmd>: <reason>".
sub imap_run
{
    my ($cmd, $line) = @_;

    if (!$imap || !$imap->IsConnected) {
        return err($cmd, 'not connected to a server');
    }
    my $r = $imap->tag_and_run($line);
    return err($cmd, server_error()) unless defined $r;
    return [ parse_untagged(rebuild_output($imap)) ];
}

sub refresh_capabilities
{
    my $resp = imap_run('capability', 'CAPABILITY') or return;

    %caps = ();
    for my $r (@$resp) {
        next unless @$r && uc($r->[0]) eq 'CAPABILITY';
        $caps{uc $_} = 1 for grep { defined } @$r[1 .. $#$r];
    }
    return 1;
}

sub has_cap { return $caps{uc $_[0]} }

# ---- connecting and authenticating ----

sub tls_args
{
    my @args = (Timeout => 30);

    if ($opt{cafile} || $opt{cadir}) {
        push @args, SSL_verify_mode => 1;
        push @args, SSL_ca_file => $opt{cafile} if $opt{cafile};
        push @args, SSL_ca_path => $opt{cadir} if $opt{cadir};
        push @args, SSL_verifycn_name => $server_name,
            SSL_verifycn_scheme => 'imap';
    }
    else {
        # Like Cyrus's cyradm: without a CA the certificate is not
        # checked (an admin shell is often pointed at localhost).
        push @args, SSL_verify_mode => 0;
    }
    if ($opt{tlskey}) {
        push @args, SSL_cert_file => $opt{tlskey},
            SSL_key_file => $opt{tlskey};
    }
    return \@args;
}

# Read a password without echo from the terminal, or a line from
# standard input when that is not a terminal.
sub read_password
{
    my ($prompt) = @_;
    my $password;

    if (!-t STDIN) {
        $password = <STDIN>;
        return undef unless defined $password;
        chomp $password;
        $password =~ s/\r\z//;
        return $password;
    }
    my $term = POSIX::Termios->new;
    my $fd = fileno(STDIN);
    $term->getattr($fd);
    my $saved = $term->getlflag;
    # echo goes off before the prompt shows, so nothing typed at once
    # after it can be echoed
    $term->setlflag($saved & ~(POSIX::ECHO() | POSIX::ECHONL()));
    $term->setattr($fd, POSIX::TCSANOW());
    print STDERR $prompt;
    $password = <STDIN>;
    $term->setlflag($saved);
    $term->setattr($fd, POSIX::TCSANOW());
    print STDERR "\n";
    return undef unless defined $password;
    chomp $password;
    return $password;
}

sub default_user
{
    my $name = getpwuid($<);
    return $ENV{USER} // $name // 'cyrus';
}

# Log in as `user` (default: --user or the login name) with the chosen
# SASL mechanism, or IMAP LOGIN.
sub do_authenticate
{
    my (%a) = @_;
    my $user = $a{user} // $opt{user} // default_user();
    my $mech = uc($a{mech} // $opt{auth} // '');

    return err('authenticate', 'not connected to a server') unless $imap;
    if ($mech eq '') {
        $mech = has_cap('AUTH=PLAIN') ? 'PLAIN' : 'LOGIN';
    }
    if ($mech eq 'LOGIN' && has_cap('LOGINDISABLED')) {
        return err('authenticate', 'the server refuses LOGIN without TLS');
    }
    my $password = $opt{password};
    if (!defined $password) {
        $password = read_password("IMAP Password: ");
        return err('authenticate', 'no password given')
            unless defined $password;
    }

    $imap->User($user);
    $imap->Password($password);
    if ($mech eq 'LOGIN') {
        $imap->Authmechanism('LOGIN');
    }
    else {
        my $authz = $opt{authz} // '';
        $imap->Authmechanism($mech);
        if ($mech eq 'PLAIN') {
            $imap->Authcallback(sub {
                return encode_base64(join("\0", $authz, $user, $password),
                                     '');
            });
        }
    }
    my $ok = $imap->login;
    my $e = server_error();

    # keep no copy of the password in the session once it is used
    $imap->Password(undef);
    $imap->Authcallback(undef);
    return err('authenticate', $e) unless $ok;
    refresh_capabilities();
    return 1;
}

sub do_disconnect
{
    if ($imap) {
        $imap->logout if $imap->IsConnected;
        undef $imap;
    }
    undef $server_name;
    %caps = ();
    return 1;
}

# Connect to `host` (optionally "host:port"), start TLS when asked or
# offered, and log in unless `noauth`.
sub do_connect
{
    my ($host, $noauth) = @_;
    my $port = $opt{port};

    do_disconnect() if $imap;
    if ($host =~ /^\[(.+)\]:(\d+)\z/ || $host =~ /^([^:]+):(\d+)\z/) {
        ($host, $port) = ($1, $2);
    }
    $port //= $opt{ssl} ? 993 : 143;
    $server_name = $host;

    # The socket is ours so that a failure names its reason.
    my ($sock, $why);
    if ($opt{ssl}) {
        require IO::Socket::SSL;
        $sock = IO::Socket::SSL->new(PeerHost => $host, PeerPort => $port,
                                     @{tls_args()});
        $why = IO::Socket::SSL::errstr() unless $sock;
    }
    else {
        $sock = IO::Socket::IP->new(PeerHost => $host, PeerPort => $port,
                                    Timeout => 30);
        $why = $@ unless $sock;
    }
    if (!$sock) {
        undef $server_name;
        return err('connect', "cannot connect to $host port $port: "
                   . ($why || $!));
    }
    my $c = Mail::IMAPClient->new(Socket => $sock, Server => $host,
                                  Port => $port, Uid => 0, Timeout => 120,
                                  Ignoresizeerrors => 1);
    if (!$c || !$c->IsConnected) {
        my $e = ($c ? $c->LastError : $@) || 'no greeting';
        undef $server_name;
        return err('connect', "$host: $e");
    }
    $imap = $c;
    refresh_capabilities() or return;

    if (!$opt{ssl} && ($opt{tls} // has_cap('STARTTLS'))) {
        if (!has_cap('STARTTLS')) {
            do_disconnect();
            return err('connect', 'the server does not offer STARTTLS');
        }
        $imap->Starttls(tls_args());
        if (!$imap->starttls) {
            my $e = $imap->LastError;
            do_disconnect();
            return err('connect', "STARTTLS failed: $e");
        }
        refresh_capabilities() or return;
    }
    return 1 if $noauth;
    return do_authenticate();
}

# ---- small helpers for commands ----

# Parse `args` with Getopt::Long: single or double dash, unique
# abbreviations (Cyrus's Tcl-style "-sub"), options before arguments.
sub getopts
{
    my ($cmd, $args, @spec) = @_;
    my $ok;
    my @warnings;

    Getopt::Long::Configure(qw(no_ignore_case require_order));
    {
        local $SIG{__WARN__} = sub { push @warnings, $_[0] };
        $ok = GetOptionsFromArray($args, @spec);
    }
    if (!$ok) {
        my $w = join(' ', @warnings) || 'bad option';
        return err($cmd, $w);
    }
    return 1;
}

sub need_args
{
    my ($cmd, $args, $min, $max, $usage) = @_;

    if (@$args < $min || (defined $max && @$args > $max)) {
        return err($cmd, "usage: $usage");
    }
    return 1;
}

# "Drafts", "\Drafts", "\Drafts \Junk" or "Drafts,Junk" as flag words.
sub special_use_flags
{
    my ($s) = @_;
    my @flags = grep { length } split /[\s,]+/, $s;

    return map { /^\\/ ? $_ : "\\" . ucfirst(lc $_) } @flags;
}

# ---- the commands ----

my @commands;                   # [ [names], handler, usage, help ]
my %command_by_name;

sub cmd_authenticate
{
    my @args = @_;
    my %a;

    # The SASL layer and service options are taken for compatibility
    # with Cyrus's cyradm; with PLAIN over TLS they change nothing.
    getopts('authenticate', \@args, 'minssf=i' => \my $minssf,
            'maxssf=i' => \my $maxssf, 'mechanisms=s' => \$a{mech},
            'service=s' => \my $service, 'tlskey=s' => \$opt{tlskey},
            'notls' => \my $notls, 'cafile=s' => \$opt{cafile},
            'capath|cadir=s' => \$opt{cadir}) or return;
    need_args('authenticate', \@args, 0, 1, 'authenticate [user]')
        or return;
    $a{user} = $args[0] if @args;
    $a{mech} = (split /[\s,]+/, $a{mech})[0] if defined $a{mech};
    return do_authenticate(%a);
}

sub cmd_server
{
    my @args = @_;

    getopts('server', \@args, 'noauthenticate' => \my $noauth) or return;
    need_args('server', \@args, 0, 1, 'server [--noauthenticate] [server]')
        or return;
    if (!@args) {
        return err('server', 'not connected to a server') unless $imap;
        print "$server_name\n";
        return 1;
    }
    return do_connect($args[0], $noauth);
}

sub cmd_disconnect
{
    need_args('disconnect', \@_, 0, 0, 'disconnect') or return;
    return do_disconnect();
}

sub cmd_chdir
{
    my @args = @_;

    need_args('chdir', \@args, 0, 1, 'chdir [directory]') or return;
    my $dir = @args ? $args[0] : ($ENV{HOME} // '/');
    chdir($dir) or return err('chdir', "$dir: $!");
    return 1;
}

sub print_list_entry
{
    my ($name, $attrs, $drop) = @_;
    my @shown = grep { !$drop || lc($_) ne lc($drop) } @$attrs;

    print @shown ? "$name (@shown)\n" : "$name\n";
}

# RFC 6154's special uses and RFC 8457's \Important.
my %special_use_flag = map { lc("\\$_") => 1 }
    qw(All Archive Drafts Flagged Junk Sent Trash Important);

sub cmd_listmailbox
{
    my @args = @_;
    my ($subscribed, $specialuse);

    getopts('listmailbox', \@args, 'subscribed' => \$subscribed,
            'specialuse' => \$specialuse) or return;
    need_args('listmailbox', \@args, 0, 2,
              'listmailbox [--subscribed] [--specialuse] [pattern'
              . ' [reference]]') or return;
    my $pattern = @args ? $args[0] : '*';
    my $ref = @args > 1 ? $args[1] : '';
    my ($line, $drop);
    my @sel;

    push @sel, 'SUBSCRIBED' if $subscribed;
    push @sel, 'SPECIAL-USE' if $specialuse;
    if ($subscribed && !has_cap('LIST-EXTENDED')) {
        $line = 'LSUB ' . quote_str($ref) . ' ' . quote_str($pattern);
    }
    elsif (@sel && has_cap('LIST-EXTENDED')) {
        $line = "LIST (@sel) " . quote_str($ref) . ' '
            . quote_str($pattern);
        $drop = '\\Subscribed' if $subscribed;
    }
    else {
        $line = 'LIST ' . quote_str($ref) . ' ' . quote_str($pattern);
        $line .= ' RETURN (SPECIAL-USE)'
            if has_cap('SPECIAL-USE') && has_cap('LIST-EXTENDED');
    }

    my $resp = imap_run('listmailbox', $line) or return;
    for my $r (@$resp) {
        next unless @$r >= 4 && $r->[0] =~ /^(?:LIST|LSUB)\z/i;
        my $attrs = ref $r->[1] ? $r->[1] : [];
        # without LIST-EXTENDED the server cannot select: filter here
        next if $specialuse && !has_cap('LIST-EXTENDED')
            && !grep { $special_use_flag{lc $_} } @$attrs;
        print_list_entry($r->[3] // '', $attrs, $drop);
    }
    return 1;
}

sub cmd_createmailbox
{
    my @args = @_;
    my ($partition, $specialuse);

    getopts('createmailbox', \@args, 'partition=s' => \$partition,
            'specialuse=s' => \$specialuse) or return;
    need_args('createmailbox', \@args, 1, 2,
              'createmailbox [--partition partition] [--specialuse use]'
              . ' mailbox [partition]') or return;
    if (@args == 2) {
        return err('createmailbox',
                   'partition given both as option and argument')
            if defined $partition;
        $partition = $args[1];
    }

    my $line = 'CREATE ' . quote_str($args[0]);
    if (defined $specialuse) {
        my @flags = special_use_flags($specialuse);
        my @param;
        push @param, 'PARTITION ' . quote_str($partition)
            if defined $partition;
        push @param, "USE (@flags)";
        $line .= " (@param)";
    }
    elsif (defined $partition) {
        $line .= ' ' . quote_str($partition);
    }
    imap_run('createmailbox', $line) or return;
    return 1;
}

sub cmd_deletemailbox
{
    my @args = @_;

    need_args('deletemailbox', \@args, 1, 1, 'deletemailbox mailbox')
        or return;
    imap_run('deletemailbox', 'DELETE ' . quote_str($args[0])) or return;
    return 1;
}

sub cmd_renamemailbox
{
    my @args = @_;
    my $partition;

    getopts('renamemailbox', \@args, 'partition=s' => \$partition)
        or return;
    need_args('renamemailbox', \@args, 2, 3,
              'renamemailbox [--partition partition] oldname newname'
              . ' [partition]') or return;
    if (@args == 3) {
        return err('renamemailbox',
                   'partition given both as option and argument')
            if defined $partition;
        $partition = $args[2];
    }
    my $line = 'RENAME ' . quote_str($args[0]) . ' ' . quote_str($args[1]);
    $line .= ' ' . quote_str($partition) if defined $partition;
    imap_run('renamemailbox', $line) or return;
    return 1;
}

sub cmd_listacl
{
    my @args = @_;

    need_args('listaclmailbox', \@args, 1, 1, 'listaclmailbox mailbox')
        or return;
    my $resp = imap_run('listaclmailbox', 'GETACL ' . quote_str($args[0]))
        or return;
    for my $r (@$resp) {
        next unless @$r >= 2 && uc($r->[0]) eq 'ACL';
        my @pairs = @$r[2 .. $#$r];
        while (@pairs >= 2) {
            my ($id, $rights) = splice(@pairs, 0, 2);
            print "$id ", $rights // '', "\n";
        }
    }
    return 1;
}

# Cyrus's named rights sets.
my %acl_alias = (
    none => '',
    read => 'lrs',
    post => 'lrsp',
    append => 'lrsip',
    write => 'lrswipkxten',
    delete => 'lrxten',
    all => 'lrswipkxtean',
);

sub cmd_setacl
{
    my @args = @_;

    need_args('setaclmailbox', \@args, 3, undef,
              'setaclmailbox mailbox id rights [id rights ...]') or return;
    return err('setaclmailbox', 'each id needs rights') unless @args % 2;
    my $mailbox = shift @args;
    my $ok = 1;
    while (@args) {
        my ($id, $rights) = splice(@args, 0, 2);
        $rights = $acl_alias{lc $rights} if exists $acl_alias{lc $rights};
        imap_run('setaclmailbox', 'SETACL ' . quote_str($mailbox) . ' '
                 . quote_str($id) . ' ' . quote_str($rights)) or $ok = 0;
    }
    return $ok;
}

sub cmd_deleteacl
{
    my @args = @_;

    need_args('deleteaclmailbox', \@args, 2, undef,
              'deleteaclmailbox mailbox id [id ...]') or return;
    my $mailbox = shift @args;
    my $ok = 1;
    for my $id (@args) {
        imap_run('deleteaclmailbox', 'DELETEACL ' . quote_str($mailbox)
                 . ' ' . quote_str($id)) or $ok = 0;
    }
    return $ok;
}

# " STORAGE 10/100 (10%) MESSAGE 1/5 (20%)" from a QUOTA response list.
sub format_quota
{
    my ($list) = @_;
    my @l = ref $list ? @$list : ();
    my $s = '';

    while (@l >= 3) {
        my ($res, $used, $limit) = splice(@l, 0, 3);
        my $pct = $limit ? int($used * 100 / $limit)
                         : ($used ? 100 : 0);
        $s .= " $res $used/$limit ($pct%)";
    }
    return $s;
}

sub cmd_listquota
{
    my @args = @_;

    need_args('listquota', \@args, 1, 1, 'listquota root') or return;
    my $resp = imap_run('listquota', 'GETQUOTA ' . quote_str($args[0]))
        or return;
    for my $r (@$resp) {
        next unless @$r >= 3 && uc($r->[0]) eq 'QUOTA';
        print format_quota($r->[2]), "\n";
    }
    return 1;
}

sub cmd_listquotaroot
{
    my @args = @_;

    need_args('listquotaroot', \@args, 1, 1, 'listquotaroot mailbox')
        or return;
    my $resp = imap_run('listquotaroot', 'GETQUOTAROOT '
                        . quote_str($args[0])) or return;
    for my $r (@$resp) {
        next unless @$r >= 3 && uc($r->[0]) eq 'QUOTA';
        print $r->[1] // '', format_quota($r->[2]), "\n";
    }
    return 1;
}

# Resource names as typed (Cyrus's lower-case ones too) to RFC 9208's.
my %quota_resource = (
    storage => 'STORAGE',
    message => 'MESSAGE',
    'annotation-storage' => 'ANNOTATION-STORAGE',
    'x-annotation-storage' => 'ANNOTATION-STORAGE',
    annotation => 'ANNOTATION-STORAGE',
    mailbox => 'MAILBOX',
    'x-num-folders' => 'MAILBOX',
);

sub cmd_setquota
{
    my @args = @_;

    need_args('setquota', \@args, 2, undef,
              'setquota root resource value [resource value ...]')
        or return;
    my $root = shift @args;
    my @list;

    # "sq root 20000" and "sq root none" are the short forms
    if (@args == 1) {
        if (lc $args[0] ne 'none') {
            return err('setquota', "invalid quota value $args[0]")
                unless $args[0] =~ /^\d+\z/;
            @list = ('STORAGE', $args[0]);
        }
    }
    else {
        return err('setquota', 'each resource needs a value') if @args % 2;
        while (@args) {
            my ($res, $value) = splice(@args, 0, 2);
            my $name = $quota_resource{lc $res};
            return err('setquota', "unknown quota resource $res")
                unless $name;
            next if lc $value eq 'none';
            return err('setquota', "invalid quota value $value")
                unless $value =~ /^\d+\z/;
            push @list, $name, $value;
        }
    }
    imap_run('setquota', 'SETQUOTA ' . quote_str($root) . " (@list)")
        or return;
    return 1;
}

# Print GETMETADATA results in Cyrus's layout: "{mailbox}:" (or
# "{Server Wide}"), a "private:"/"shared:" header, then "name: value"
# with the scope and the Cyrus vendor prefix left out.
sub print_metadata
{
    my ($mailbox, $pairs) = @_;
    my %by_scope;

    for my $p (@$pairs) {
        my ($entry, $value) = @$p;
        next unless defined $value;
        next unless $entry =~ m{^/(shared|private)(/.*)\z}i;
        my ($scope, $name) = (lc $1, $2);
        $name =~ s{^/vendor/cmu/cyrus-imapd/}{/};
        $name =~ s{^/}{};
        push @{$by_scope{$scope}}, [$name, $value];
    }
    return unless %by_scope;
    print $mailbox eq '' ? "{Server Wide}\n" : "{$mailbox}:\n";
    for my $scope (sort keys %by_scope) {
        print "  $scope:\n";
        for my $e (@{$by_scope{$scope}}) {
            print "    $e->[0]: $e->[1]\n";
        }
    }
}

# All metadata of a mailbox ('' for the server): [entry, value] pairs,
# through GETMETADATA or the older GETANNOTATION.
sub fetch_metadata
{
    my ($cmd, $mailbox, @entries) = @_;
    my @pairs;

    if (has_cap('METADATA') || has_cap('METADATA-SERVER')) {
        @entries = ('/shared', '/private') unless @entries;
        my $resp = imap_run($cmd, 'GETMETADATA (DEPTH infinity) '
                            . quote_str($mailbox) . ' ('
                            . join(' ', map { quote_str($_) } @entries)
                            . ')') or return;
        for my $r (@$resp) {
            next unless @$r >= 3 && uc($r->[0]) eq 'METADATA'
                && ref $r->[2];
            my @l = @{$r->[2]};
            push @pairs, [splice(@l, 0, 2)] while @l >= 2;
        }
        return \@pairs;
    }
    my $resp = imap_run($cmd, 'GETANNOTATION ' . quote_str($mailbox)
                        . ' "*" ("value.shared" "value.priv")') or return;
    for my $r (@$resp) {
        next unless @$r >= 4 && uc($r->[0]) eq 'ANNOTATION' && ref $r->[3];
        my @l = @{$r->[3]};
        while (@l >= 2) {
            my ($attr, $value) = splice(@l, 0, 2);
            my $scope = $attr =~ /priv/i ? '/private' : '/shared';
            push @pairs, [$scope . $r->[2], $value];
        }
    }
    return \@pairs;
}

sub cmd_info
{
    my @args = @_;

    need_args('info', \@args, 0, 1, 'info [mailbox]') or return;
    my $mailbox = @args ? $args[0] : '';
    my $pairs = fetch_metadata('info', $mailbox) or return;
    print_metadata($mailbox, $pairs);
    return 1;
}

sub cmd_getmetadata
{
    my @args = @_;

    need_args('getmetadata', \@args, 0, undef,
              'getmetadata [mailbox [entry ...]]') or return;
    my $mailbox = @args ? shift @args : '';
    my $pairs = fetch_metadata('getmetadata', $mailbox, @args) or return;
    print_metadata($mailbox, $pairs);
    return 1;
}

# Cyrus's short names: settings of its own live in its vendor tree.
my %vendor_entry = map { $_ => 1 }
    qw(expire squat sharedseen news2mail sieve pop3showafter shutdown);

# The full entry name for `name` as cyradm users type it.
sub entry_name
{
    my ($name, $private) = @_;
    my $scope = $private ? '/private' : '/shared';

    return $name if $name =~ m{^/(?:shared|private)/}i;
    return $scope . $name if $name =~ m{^/};
    return '/private/specialuse' if lc $name eq 'specialuse' && !$private;
    return "$scope/vendor/cmu/cyrus-imapd/" . lc $name
        if $vendor_entry{lc $name};
    return "$scope/" . lc $name;
}

sub set_metadata
{
    my ($cmd, $mailbox, $entry, $value) = @_;
    # "\\Junk" is awkward to type in a shell: the backslash is optional
    $value = join(' ', special_use_flags($value))
        if $entry =~ m{/specialuse\z}i && lc $value ne 'none';
    my $v = lc $value eq 'none' ? 'NIL' : quote_str($value);

    imap_run($cmd, 'SETMETADATA ' . quote_str($mailbox) . ' ('
             . quote_str($entry) . " $v)") or return;
    return 1;
}

sub cmd_setmetadata
{
    my @args = @_;
    my $private;

    getopts('setmetadata', \@args, 'private' => \$private) or return;
    need_args('setmetadata', \@args, 2, 3,
              'setmetadata [--private] mailbox [annotation] value')
        or return;
    my ($mailbox, $name, $value) =
        @args == 3 ? @args : ($args[0], 'comment', $args[1]);
    return set_metadata('setmetadata', $mailbox,
                        entry_name($name, $private), $value);
}

sub cmd_mboxconfig
{
    my @args = @_;
    my $private;

    getopts('mboxconfig', \@args, 'private' => \$private) or return;
    need_args('mboxconfig', \@args, 3, 3,
              'mboxconfig [--private] mailbox attribute value') or return;
    return set_metadata('mboxconfig', $args[0],
                        entry_name($args[1], $private), $args[2]);
}

sub cmd_setinfo
{
    my @args = @_;

    need_args('setinfo', \@args, 2, 2, 'setinfo attribute value')
        or return;
    my $name = lc $args[0];
    my $entry = $name =~ m{^/} ? entry_name($name, 0)
              : $name =~ /^(?:motd|comment|admin)\z/ ? "/shared/$name"
              : "/shared/vendor/cmu/cyrus-imapd/$name";
    return set_metadata('setinfo', '', $entry, $args[1]);
}

sub cmd_subscribe
{
    my @args = @_;

    need_args('subscribe', \@args, 1, 1, 'subscribe mailbox') or return;
    imap_run('subscribe', 'SUBSCRIBE ' . quote_str($args[0])) or return;
    return 1;
}

sub cmd_unsubscribe
{
    my @args = @_;

    need_args('unsubscribe', \@args, 1, 1, 'unsubscribe mailbox')
        or return;
    imap_run('unsubscribe', 'UNSUBSCRIBE ' . quote_str($args[0]))
        or return;
    return 1;
}

sub cmd_reconstruct
{
    my @args = @_;
    my $recursive;

    getopts('reconstruct', \@args, 'r|recursive' => \$recursive)
        or return;
    need_args('reconstruct', \@args, 1, 1, 'reconstruct [-r] mailbox')
        or return;
    my $line = 'RECONSTRUCT ' . quote_str($args[0]);
    $line .= ' RECURSIVE' if $recursive;
    imap_run('reconstruct', $line) or return;
    return 1;
}

sub cmd_xfer
{
    my @args = @_;
    my $partition;

    getopts('xfermailbox', \@args, 'partition=s' => \$partition) or return;
    need_args('xfermailbox', \@args, 2, 3,
              'xfermailbox [--partition partition] mailbox server'
              . ' [partition]') or return;
    $partition //= $args[2];
    my $line = 'XFER ' . quote_str($args[0]) . ' ' . quote_str($args[1]);
    $line .= ' ' . quote_str($partition) if defined $partition;
    imap_run('xfermailbox', $line) or return;
    return 1;
}

sub cmd_version
{
    need_args('version', \@_, 0, 0, 'version') or return;
    my $resp = imap_run('version', 'ID NIL') or return;
    for my $r (@$resp) {
        next unless @$r >= 2 && uc($r->[0]) eq 'ID' && ref $r->[1];
        my @l = @{$r->[1]};
        while (@l >= 2) {
            my ($k, $v) = splice(@l, 0, 2);
            printf "%-10s : %s\n", $k, $v // '';
        }
    }
    return 1;
}

sub cmd_help
{
    my @args = @_;

    if (@args) {
        my $c = $command_by_name{lc $args[0]};
        return err('help', "no such command: $args[0]") unless $c;
        print join(', ', @{$c->[0]}), "\n  usage: $c->[2]\n  $c->[3]\n";
        return 1;
    }
    for my $c (sort { $a->[0][0] cmp $b->[0][0] } @commands) {
        printf "%-33s %s\n", join(', ', @{$c->[0]}), $c->[3];
    }
    return 1;
}

my $exit_code;                  # set by exit/quit

sub cmd_exit
{
    my @args = @_;

    need_args('exit', \@args, 0, 1, 'exit [number]') or return;
    if (@args && $args[0] !~ /^\d+\z/) {
        return err('exit', "not a number: $args[0]");
    }
    $exit_code = @args ? $args[0] : $prev_status;
    return 1;
}

@commands = (
    [[qw(authenticate login auth)], \&cmd_authenticate,
     'authenticate [--mechanisms mech] [user]', 'authenticate to server'],
    [[qw(chdir cd)], \&cmd_chdir, 'chdir directory',
     'change current directory'],
    [[qw(createmailbox create cm)], \&cmd_createmailbox,
     'createmailbox [--partition p] [--specialuse use] mailbox [partition]',
     'create mailbox'],
    [[qw(deleteaclmailbox deleteacl dam)], \&cmd_deleteacl,
     'deleteaclmailbox mailbox id [id ...]', 'remove ACLs from mailbox'],
    [[qw(deletemailbox delete dm)], \&cmd_deletemailbox,
     'deletemailbox mailbox', 'delete mailbox'],
    [[qw(disconnect disc)], \&cmd_disconnect, 'disconnect',
     'disconnect from current server'],
    [[qw(exit quit)], \&cmd_exit, 'exit [number]', 'exit cyradm'],
    [[qw(getmetadata getmd)], \&cmd_getmetadata,
     'getmetadata [mailbox [entry ...]]', 'display mailbox/server metadata'],
    [[qw(help ?)], \&cmd_help, 'help [command]', 'show commands'],
    [[qw(info)], \&cmd_info, 'info [mailbox]',
     'display mailbox/server annotations'],
    [[qw(listaclmailbox listacl lam)], \&cmd_listacl,
     'listaclmailbox mailbox', 'list ACLs on mailbox'],
    [[qw(listmailbox list lm)], \&cmd_listmailbox,
     'listmailbox [--subscribed] [--specialuse] [pattern [reference]]',
     'list mailboxes'],
    [[qw(listquota lq)], \&cmd_listquota, 'listquota root',
     'list quotas on specified root'],
    [[qw(listquotaroot lqr lqm)], \&cmd_listquotaroot,
     'listquotaroot mailbox', 'show quota roots and quotas for mailbox'],
    [[qw(mboxconfig mboxcfg)], \&cmd_mboxconfig,
     'mboxconfig [--private] mailbox attribute value', 'configure mailbox'],
    [[qw(reconstruct)], \&cmd_reconstruct, 'reconstruct [-r] mailbox',
     'reconstruct mailbox'],
    [[qw(renamemailbox rename renm)], \&cmd_renamemailbox,
     'renamemailbox [--partition p] oldname newname [partition]',
     'rename (and optionally relocate) mailbox'],
    [[qw(server servername connect)], \&cmd_server,
     'server [--noauthenticate] [server]',
     'show current server or connect to server'],
    [[qw(setaclmailbox setacl sam)], \&cmd_setacl,
     'setaclmailbox mailbox id rights [id rights ...]',
     'set ACLs on mailbox'],
    [[qw(setinfo)], \&cmd_setinfo, 'setinfo attribute value',
     'set server metadata'],
    [[qw(setmetadata setmd)], \&cmd_setmetadata,
     'setmetadata [--private] mailbox [annotation] value',
     'set metadata to mailbox'],
    [[qw(setquota sq)], \&cmd_setquota,
     'setquota root resource value [resource value ...]',
     'set quota on mailbox or resource'],
    [[qw(subscribe sub)], \&cmd_subscribe, 'subscribe mailbox',
     'subscribe to a mailbox'],
    [[qw(unsubscribe unsub)], \&cmd_unsubscribe, 'unsubscribe mailbox',
     'unsubscribe from a mailbox'],
    [[qw(version ver)], \&cmd_version, 'version',
     'display version info of current server'],
    [[qw(xfermailbox xfer)], \&cmd_xfer,
     'xfermailbox [--partition p] mailbox server [partition]',
     'transfer (relocate) a mailbox to a different server'],
);
for my $c (@commands) {
    $command_by_name{$_} = $c for @{$c->[0]};
}

# ---- the shell ----

# Split a command line into words: blanks separate, single and double
# quotes group, a backslash takes the next character literally.
sub split_words
{
    my ($line) = @_;
    my @words;
    my ($word, $in_word, $quote, $escape) = ('', 0, '', 0);

    for my $ch (split //, $line) {
        if ($escape) {
            $word .= $ch;
            $escape = 0;
        }
        elsif ($quote eq "'") {
            if ($ch eq "'") { $quote = '' } else { $word .= $ch }
        }
        elsif ($ch eq '\\') {
            ($escape, $in_word) = (1, 1);
        }
        elsif ($quote eq '"') {
            if ($ch eq '"') { $quote = '' } else { $word .= $ch }
        }
        elsif ($ch eq '"' || $ch eq "'") {
            ($quote, $in_word) = ($ch, 1);
        }
        elsif ($ch =~ /\s/) {
            push @words, $word if $in_word;
            ($word, $in_word) = ('', 0);
        }
        else {
            $word .= $ch;
            $in_word = 1;
        }
    }
    return (undef, 'unterminated quote') if $quote ne '';
    $word .= '\\' if $escape;
    push @words, $word if $in_word;
    return (\@words, undef);
}

# Run one command line; returns 1 unless the shell should stop.
sub run_line
{
    my ($line) = @_;

    $line =~ s/\r?\n\z//;
    return 1 if $line =~ /^\s*(?:#.*)?\z/;
    my ($words, $why) = split_words($line);
    if (!$words) {
        err('cyradm', $why);
        return 1;
    }
    return 1 unless @$words;
    my $name = shift @$words;
    my $c = $command_by_name{lc $name};
    if (!$c) {
        err('cyradm', "unknown command: $name (try \"help\")");
        return 1;
    }
    $prev_status = $last_status;
    $last_status = 0;
    my $ok = $c->[1]->(@$words);
    $last_status = 1 unless $ok;
    return !defined $exit_code;
}

sub prompt
{
    return ($server_name // 'cyradm') . '> ';
}

# Commands from standard input: with a terminal through Term::ReadLine
# (history, editing); otherwise line by line, echoing each after the
# prompt as Cyrus's cyradm does, so a transcript reads the same.
sub shell_loop
{
    if ($is_interactive) {
        require Term::ReadLine;
        my $term = Term::ReadLine->new('cyradm');
        $term->ornaments(0) if $term->can('ornaments');
        for (;;) {
            my $line = $term->readline(prompt());
            if (!defined $line) {
                print "\n";
                last;
            }
            $term->addhistory($line) if $line =~ /\S/;
            run_line($line) or last;
        }
        return;
    }
    $| = 1;
    for (;;) {
        print prompt();
        my $line = <STDIN>;
        last unless defined $line;
        chomp $line;
        print "$line\n";
        run_line($line) or last;
    }
}

sub run_rc_file
{
    my ($file) = @_;

    open(my $fh, '<', $file) or return;
    while (my $line = <$fh>) {
        run_line($line) or last;
    }
    close($fh);
}

sub usage
{
    print STDERR <<'EOF';
usage: cyradm [--user user] [--authz authz] [--auth mechanism]
              [--port n] [--tls | --notls] [--ssl] [--cafile file]
              [--cadir dir] [--tlskey file] [--password password]
              [--[no]rc] [--systemrc file] [--userrc file]
              [--server] server
EOF
    exit 2;
}

sub main
{
    my @argv = @ARGV;
    my ($server, $systemrc, $userrc, $notls, $help);

    Getopt::Long::Configure(qw(no_ignore_case permute));
    GetOptionsFromArray(\@argv,
        'user|u=s' => \$opt{user},
        'authz=s' => \$opt{authz},
        'auth|a=s' => \$opt{auth},
        'port|p=i' => \$opt{port},
        'tls!' => \$opt{tls},
        'notls' => \$notls,
        'ssl|imaps' => \$opt{ssl},
        'cafile=s' => \$opt{cafile},
        'cadir|capath=s' => \$opt{cadir},
        'tlskey=s' => \$opt{tlskey},
        'password|w=s' => \$opt{password},
        'server=s' => \$server,
        'rc!' => \$opt{rc},
        'systemrc=s' => \$systemrc,
        'userrc=s' => \$userrc,
        'help|h' => \$help,
        'version|v' => sub { print "cyradm (Columba) $VERSION\n"; exit 0 },
    ) or usage();
    usage() if $help;
    $opt{tls} = 0 if $notls;
    $server //= shift @argv;
    usage() if @argv;

    if ($opt{rc}) {
        run_rc_file($systemrc) if defined $systemrc;
        run_rc_file($userrc // (($ENV{HOME} // '') . '/.cyradmrc'));
    }
    if (defined $server && !defined $exit_code) {
        do_connect($server) or do_disconnect();
    }
    shell_loop() unless defined $exit_code;
    do_disconnect();
    exit($exit_code // $last_status);
}

main();
