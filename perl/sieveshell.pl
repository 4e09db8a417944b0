#!/usr/bin/perl
# sieveshell: a ManageSieve (RFC 5804) shell to list, upload, download,
# activate and delete Sieve scripts, with Cyrus sieveshell's options.
# Columba is free software; see COPYING for the licence.

use strict;
use warnings;

use Getopt::Long qw(GetOptionsFromArray);
use POSIX qw();

our $VERSION = '0.1.0';

# ---- the ManageSieve client ----
#
# A response is any number of data lines followed by a status line:
#     OK / NO / BYE [SP "(" code [SP string] ")"] [SP string] CRLF
# Strings are quoted ("...", backslash escapes) or literals ({n}CRLF
# followed by n octets; the server never waits for a continuation).
# We send strings quoted, or as non-synchronizing literals {n+} when
# they hold line breaks or are long.

package ManageSieve;

use IO::Socket::IP;
use MIME::Base64 qw(encode_base64);

# Longest line (outside literals) and literal we accept from a server.
use constant MAX_LINE => 65536;
use constant MAX_LITERAL => 64 * 1024 * 1024;

sub new
{
    my ($class, %a) = @_;
    my $sock = IO::Socket::IP->new(PeerHost => $a{host},
                                   PeerPort => $a{port},
                                   Timeout => $a{timeout} // 60);

    return (undef, "cannot connect to $a{host} port $a{port}: $@")
        unless $sock;
    binmode($sock);
    my $self = bless { sock => $sock, buf => '', caps => {},
                       timeout => $a{timeout} // 60 }, $class;
    my ($ok, $why) = $self->read_capabilities;
    return (undef, "greeting: $why") unless $ok;
    return ($self, undef);
}

# Make sure the buffer holds at least `n` bytes; false on EOF, error or
# a server silent for the timeout.
sub fill
{
    my ($self, $n) = @_;

    while (length($self->{buf}) < $n) {
        # TLS may hold decrypted bytes the descriptor no longer shows
        my $sock = $self->{sock};
        if (!($sock->can('pending') && $sock->pending)) {
            my $rin = '';
            vec($rin, fileno($sock), 1) = 1;
            return 0 unless select(my $rout = $rin, undef, undef,
                                   $self->{timeout}) > 0;
        }
        my $got = sysread($self->{sock}, $self->{buf}, 65536,
                          length($self->{buf}));
        return 0 unless $got;
    }
    return 1;
}

# Make sure the buffer holds a whole line (up to and with its LF).
sub fill_line
{
    my ($self) = @_;

    while (index($self->{buf}, "\n") < 0) {
        return (0, 'line too long') if length($self->{buf}) > MAX_LINE;
        return (0, 'connection closed')
            unless $self->fill(length($self->{buf}) + 1);
    }
    return (1, undef);
}

# Read one line of tokens: atoms and strings as [type, value], with
# "(" and ")" as their own tokens.  Returns (\@tokens) or (undef, why).
sub read_tokens
{
    my ($self) = @_;
    my @tokens;

    for (;;) {
        my ($ok, $why) = $self->fill_line;
        return (undef, $why) unless $ok;
        $self->{buf} =~ s/^ +//;
        if ($self->{buf} =~ s/^\r?\n//) {
            return (\@tokens);
        }
        elsif ($self->{buf} =~ s/^([()])//) {
            push @tokens, [$1, $1];
        }
        elsif ($self->{buf} =~ s/^"((?:[^"\\\r\n]|\\.)*)"//) {
            my $s = $1;
            $s =~ s/\\(.)/$1/g;
            push @tokens, ['string', $s];
        }
        elsif ($self->{buf} =~ s/^\{(\d{1,10})\+?\}\r?\n//) {
            my $len = $1;
            return (undef, 'literal too large') if $len > MAX_LITERAL;
            return (undef, 'connection closed') unless $self->fill($len);
            push @tokens, ['string', substr($self->{buf}, 0, $len, '')];
        }
        elsif ($self->{buf} =~ s/^([^\s()"{]+)//) {
            push @tokens, ['atom', $1];
        }
        else {
            return (undef, 'unparsable server response');
        }
    }
}

# The status line `t` (a token list) as a response hash, or undef when
# it is not one.
sub status_of
{
    my ($t) = @_;

    return undef unless @$t && $t->[0][0] eq 'atom'
        && $t->[0][1] =~ /^(OK|NO|BYE)\z/i;
    my %r = (status => uc $1);
    my $i = 1;
    if ($i < @$t && $t->[$i][0] eq '(') {
        my @code;
        for ($i++; $i < @$t && $t->[$i][0] ne ')'; $i++) {
            push @code, $t->[$i][1];
        }
        $i++;
        $r{code} = join(' ', @code);
    }
    $r{text} = $t->[$i][1] if $i < @$t;
    return \%r;
}

# After a broken exchange or BYE the connection is of no further use.
sub drop
{
    my ($self) = @_;

    close($self->{sock}) if $self->{sock};
    delete $self->{sock};
}

# Read data lines up to the status line.  Returns a hash: status (OK,
# NO, BYE), code, text, lines (token lists), or status '' and why.
sub read_response
{
    my ($self) = @_;
    my @lines;

    for (;;) {
        my ($t, $why) = $self->read_tokens;
        if (!$t) {
            $self->drop;
            return { status => '', why => $why, lines => \@lines };
        }
        my $r = status_of($t);
        if ($r) {
            $r->{lines} = \@lines;
            $self->drop if $r->{status} eq 'BYE';
            return $r;
        }
        push @lines, $t;
    }
}

# The greeting (and the re-sent list after STARTTLS): capability lines.
sub read_capabilities
{
    my ($self) = @_;
    my $r = $self->read_response;

    return (0, $r->{why} // $r->{text} // $r->{status})
        unless $r->{status} eq 'OK';
    $self->{caps} = {};
    for my $l (@{$r->{lines}}) {
        next unless @$l && $l->[0][0] eq 'string';
        $self->{caps}{uc $l->[0][1]} = @$l > 1 ? $l->[1][1] : '';
    }
    return (1, undef);
}

sub capability { return $_[0]->{caps}{uc $_[1]} }

# A ManageSieve string for `s`.
sub quote
{
    my ($s) = @_;

    if ($s =~ /[\r\n\0]/ || length($s) > 1024) {
        return '{' . length($s) . "+}\r\n" . $s;
    }
    $s =~ s/(["\\])/\\$1/g;
    return qq("$s");
}

sub send_raw
{
    my ($self, $data) = @_;
    my $off = 0;

    while ($off < length $data) {
        my $n = syswrite($self->{sock}, $data, length($data) - $off, $off);
        return 0 unless $n;
        $off += $n;
    }
    return 1;
}

# Send a command (its words already quoted) and read the response.
sub command
{
    my ($self, @words) = @_;

    if (!$self->{sock} || !$self->send_raw(join(' ', @words) . "\r\n")) {
        $self->drop;
        return { status => '', why => 'connection lost', lines => [] };
    }
    return $self->read_response;
}

sub starttls
{
    my ($self, $ssl_args) = @_;
    my $r = $self->command('STARTTLS');

    return (0, $r->{why} // $r->{text} // $r->{status})
        unless $r->{status} eq 'OK';
    require IO::Socket::SSL;
    IO::Socket::SSL->start_SSL($self->{sock}, @$ssl_args)
        or return (0, 'TLS handshake failed: '
                   . (IO::Socket::SSL::errstr() // ''));
    $self->{buf} = '';
    return $self->read_capabilities;
}

# SASL PLAIN with an initial response: authorization id `authz` (may be
# empty), authentication id `authc`.
sub authenticate_plain
{
    my ($self, $authz, $authc, $password) = @_;
    my $ir = encode_base64(join("\0", $authz, $authc, $password), '');

    # PLAIN is done in one step; a server challenge is answered "*",
    # which cancels the exchange (RFC 5804 2.1).
    return (0, 'connection lost')
        unless $self->send_raw('AUTHENTICATE "PLAIN" ' . quote($ir)
                               . "\r\n");
    my $r;
    for (my $round = 0; ; $round++) {
        my ($t, $why) = $self->read_tokens;
        if (!$t) {
            $self->drop;
            return (0, $why);
        }
        $r = status_of($t);
        last if $r;
        return (0, 'server keeps challenging') if $round > 0;
        $self->send_raw("\"*\"\r\n");
    }
    return (1, undef) if $r->{status} eq 'OK';
    return (0, $r->{why} // $r->{text} // 'authentication failed');
}

sub logout
{
    my ($self) = @_;

    $self->command('LOGOUT') if $self->{sock};
    $self->drop;
}

package main;

my %opt = (port => undef, tls => undef);
my $ms;                         # the ManageSieve connection
my $any_failed = 0;

sub fail
{
    my ($what, $why) = @_;

    $why //= 'failed';
    $why =~ s/\s+\z//;
    print STDERR "$what: $why\n";
    $any_failed = 1;
    return;
}

sub response_error
{
    my ($r) = @_;
    my $s = $r->{why} // $r->{text} // $r->{status};

    $s = "($r->{code}) $s" if defined $r->{code} && !defined $r->{why};
    return $s;
}

sub check
{
    my ($what, $r) = @_;

    return 1 if $r->{status} eq 'OK';
    return fail($what, response_error($r));
}

sub need_args
{
    my ($cmd, $args, $min, $max, $usage) = @_;

    return 1 if @$args >= $min && @$args <= $max;
    return fail($cmd, "usage: $usage");
}

sub cmd_list
{
    need_args('list', \@_, 0, 0, 'list') or return;
    my $r = $ms->command('LISTSCRIPTS');
    check('list', $r) or return;
    for my $l (@{$r->{lines}}) {
        next unless @$l && $l->[0][0] eq 'string';
        my $active = @$l > 1 && uc($l->[1][1]) eq 'ACTIVE';
        print $l->[0][1], $active ? "  <- active script\n" : "\n";
    }
    return 1;
}

# "put dir/vacation.sieve" stores the script as "vacation".
sub script_name_of
{
    my ($file) = @_;
    my $name = $file;

    $name =~ s{.*/}{};
    $name =~ s/\.(?:sieve|siv|script)\z//;
    return $name;
}

sub cmd_put
{
    my @args = @_;

    need_args('put', \@args, 1, 2, 'put <filename> [<target name>]')
        or return;
    my ($file, $name) = @args;
    $name //= script_name_of($file);
    open(my $fh, '<:raw', $file) or return fail('put', "$file: $!");
    my $data = do { local $/; <$fh> };
    close($fh);
    $data //= '';
    my $r = $ms->command('PUTSCRIPT', ManageSieve::quote($name),
                         '{' . length($data) . "+}\r\n" . $data);
    return check('put', $r);
}

sub cmd_get
{
    my @args = @_;

    need_args('get', \@args, 1, 2, 'get <name> [<filename>]') or return;
    my $r = $ms->command('GETSCRIPT', ManageSieve::quote($args[0]));
    check('get', $r) or return;
    my ($l) = @{$r->{lines}};
    my $data = $l && @$l ? $l->[0][1] : '';
    if (@args == 2) {
        open(my $fh, '>:raw', $args[1])
            or return fail('get', "$args[1]: $!");
        print $fh $data;
        close($fh) or return fail('get', "$args[1]: $!");
    }
    else {
        print $data;
    }
    return 1;
}

sub cmd_delete
{
    my @args = @_;

    need_args('delete', \@args, 1, 1, 'delete <name>') or return;
    return check('delete',
                 $ms->command('DELETESCRIPT', ManageSieve::quote($args[0])));
}

sub cmd_activate
{
    my @args = @_;

    need_args('activate', \@args, 1, 1, 'activate <name>') or return;
    return check('activate',
                 $ms->command('SETACTIVE', ManageSieve::quote($args[0])));
}

sub cmd_deactivate
{
    need_args('deactivate', \@_, 0, 0, 'deactivate') or return;
    return check('deactivate', $ms->command('SETACTIVE', '""'));
}

my $quit = 0;

sub cmd_quit { $quit = 1; return 1 }

my @commands = (
    [[qw(list ls lm)], \&cmd_list, 'list scripts on server'],
    [[qw(put)], \&cmd_put,
     'put <filename> [<target name>]  upload script to server'],
    [[qw(get)], \&cmd_get,
     'get <name> [<filename>]  get script; without a filename, print it'],
    [[qw(delete rm)], \&cmd_delete, 'delete <name>  delete script'],
    [[qw(activate)], \&cmd_activate, 'activate <name>  activate script'],
    [[qw(deactivate)], \&cmd_deactivate, 'deactivate all scripts'],
    [[qw(help ?)], \&cmd_help, 'this text'],
    [[qw(quit exit)], \&cmd_quit, 'leave sieveshell'],
);
my %command_by_name;
for my $c (@commands) {
    $command_by_name{$_} = $c for @{$c->[0]};
}

sub cmd_help
{
    for my $c (@commands) {
        printf "%-12s %s\n", join(', ', @{$c->[0]}), $c->[2];
    }
    return 1;
}

# Words of a command line: blanks separate, quotes group, a backslash
# takes the next character literally.
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
        elsif ($quote ne '' && $ch eq $quote) {
            $quote = '';
        }
        elsif ($quote eq "'") {
            $word .= $ch;
        }
        elsif ($ch eq '\\') {
            ($escape, $in_word) = (1, 1);
        }
        elsif ($quote eq '' && ($ch eq '"' || $ch eq "'")) {
            ($quote, $in_word) = ($ch, 1);
        }
        elsif ($quote eq '' && $ch =~ /\s/) {
            push @words, $word if $in_word;
            ($word, $in_word) = ('', 0);
        }
        else {
            $word .= $ch;
            $in_word = 1;
        }
    }
    return undef if $quote ne '';
    push @words, $word if $in_word;
    return \@words;
}

# Run one command line; false when the shell should stop.
sub run_line
{
    my ($line) = @_;

    $line =~ s/\r?\n\z//;
    return 1 if $line =~ /^\s*(?:#.*)?\z/;
    my $words = split_words($line);
    if (!$words) {
        fail('sieveshell', 'unterminated quote');
        return 1;
    }
    return 1 unless @$words;
    my $name = shift @$words;
    my $c = $command_by_name{lc $name};
    if (!$c) {
        fail('sieveshell', "unknown command: $name (try \"help\")");
        return 1;
    }
    $c->[1]->(@$words);
    if (!$ms->{sock}) {
        fail('sieveshell', 'connection to server lost');
        return 0;
    }
    return !$quit;
}

sub read_password
{
    my ($prompt) = @_;
    my $password;

    if (!-t STDIN) {
        $password = <STDIN>;
        return undef unless defined $password;
        $password =~ s/\r?\n\z//;
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

sub tls_args
{
    my ($host) = @_;
    my @args = (Timeout => 30, SSL_hostname => $host);

    if ($opt{cafile} || $opt{cadir}) {
        push @args, SSL_verify_mode => 1,
            SSL_verifycn_name => $host, SSL_verifycn_scheme => 'default';
        push @args, SSL_ca_file => $opt{cafile} if $opt{cafile};
        push @args, SSL_ca_path => $opt{cadir} if $opt{cadir};
    }
    else {
        push @args, SSL_verify_mode => 0;
    }
    return \@args;
}

sub usage
{
    print STDERR <<'EOF';
usage: sieveshell [--user=user] [--authname=authname] [--realm=realm]
                  [--password=password] [--port=port] [--tls|--notls]
                  [--cafile=file] [--cadir=dir] [--exec=script]
                  [--execfile=file]
                  server[:port]
EOF
    exit 2;
}

sub connect_and_login
{
    my ($host, $port) = @_;
    my ($c, $why) = ManageSieve->new(host => $host, port => $port);

    return fail('sieveshell', $why) unless $c;
    $ms = $c;
    if (($opt{tls} // defined $ms->capability('STARTTLS'))) {
        return fail('sieveshell', 'the server does not offer STARTTLS')
            unless defined $ms->capability('STARTTLS');
        my ($ok, $err) = $ms->starttls(tls_args($host));
        return fail('sieveshell', "STARTTLS: $err") unless $ok;
    }
    my $sasl = $ms->capability('SASL') // '';
    return fail('sieveshell', "the server offers no PLAIN login ($sasl)")
        unless grep { uc $_ eq 'PLAIN' } split ' ', $sasl;

    my $authc = $opt{authname} // $ENV{USER} // getpwuid($<) // '';
    $authc .= '@' . $opt{realm} if defined $opt{realm} && $authc !~ /@/;
    my $authz = $opt{user} // '';
    $authz = '' if $authz eq $authc;
    my $password = $opt{password};
    $password //= read_password("$authc\'s password: ");
    return fail('sieveshell', 'no password given') unless defined $password;
    my ($ok, $err) = $ms->authenticate_plain($authz, $authc, $password);
    return fail('sieveshell', "authentication failed: $err") unless $ok;
    return 1;
}

sub shell
{
    if (-t STDIN) {
        require Term::ReadLine;
        my $term = Term::ReadLine->new('sieveshell');
        $term->ornaments(0) if $term->can('ornaments');
        while (defined(my $line = $term->readline('> '))) {
            $term->addhistory($line) if $line =~ /\S/;
            run_line($line) or return;
        }
        print "\n";
        return;
    }
    $| = 1;
    while (defined(my $line = <STDIN>)) {
        run_line($line) or return;
    }
}

sub main
{
    my @argv = @ARGV;
    my ($exec, $execfile, $notls);

    Getopt::Long::Configure(qw(no_ignore_case permute));
    GetOptionsFromArray(\@argv,
        'user|u=s' => \$opt{user},
        'authname|a=s' => \$opt{authname},
        'realm|r=s' => \$opt{realm},
        'password|p=s' => \$opt{password},
        'port=i' => \$opt{port},
        'tls!' => \$opt{tls},
        'notls' => \$notls,
        'cafile=s' => \$opt{cafile},
        'cadir|capath=s' => \$opt{cadir},
        'exec|e=s' => \$exec,
        'execfile|f=s' => \$execfile,
        'help|h' => sub { usage() },
    ) or usage();
    $opt{tls} = 0 if $notls;
    usage() unless @argv == 1;

    my ($host, $port) = ($argv[0], $opt{port});
    if ($host =~ /^\[(.+)\]:(\d+)\z/ || $host =~ /^([^:]+):(\d+)\z/) {
        ($host, $port) = ($1, $2);
    }
    $host =~ s/^\[(.*)\]\z/$1/;
    $port //= 4190;

    connect_and_login($host, $port) or exit 1;
    if (defined $exec) {
        for my $line (split /\r?\n|;/, $exec) {
            run_line($line) or last;
        }
    }
    elsif (defined $execfile) {
        open(my $fh, '<', $execfile)
            or do { fail('sieveshell', "$execfile: $!"); exit 1 };
        while (my $line = <$fh>) {
            run_line($line) or last;
        }
        close($fh);
    }
    else {
        shell();
    }
    $ms->logout if $ms->{sock};
    exit($any_failed ? 1 : 0);
}

main();
