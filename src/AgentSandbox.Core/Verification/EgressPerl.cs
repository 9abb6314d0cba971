namespace AgentSandbox.Verification
{
    /// <summary>
    /// The egress attempts' programs, perl as perl-base has it (Socket, IO::Socket::IP, IO::Select), run with
    /// perl -e "$P_PL" so that no quoting stands between them and sh. Each ends by printing its verdict line.
    /// </summary>
    internal static class EgressPerl
    {
        /// <summary>What every program starts with: verdict, host:port parsing, a TCP connect with a timeout, reading a line with one.</summary>
        public const string Common = """
            use strict; use warnings; use Socket qw(:all); use IO::Socket::IP; use IO::Select;
            $| = 1;
            sub verdict { print "$_[0]: $_[1]\n"; exit 0 }
            sub target { my $t = shift; $t =~ /^\[(.+)\]:(\d+)$/ || $t =~ /^([^:]+):(\d+)$/ ? ($1, $2) : ($t, 0) }
            sub loopback { $_[0] =~ /^(127\.|::1$|::ffff:127\.)/ }
            sub tcp { my ($h, $p, $secs) = @_; my $s = IO::Socket::IP->new(PeerHost => $h, PeerPort => $p, Timeout => $secs); my $e = $s ? "" : ($@ =~ s/^IO::Socket::IP: (connect: )?//r || "$!"); chomp $e; ($s, $e) }
            # Reads until the end of a line, or what came in $secs seconds.
            sub line { my ($s, $secs) = @_; my $sel = IO::Select->new($s); my $buf = ""; my $end = time + $secs;
              while ($buf !~ /\n/ && time < $end + 1) { last unless $sel->can_read($end - time > 0 ? $end - time : 0); my $n = sysread($s, $buf, 4096, length $buf); last unless $n; } $buf }
            """;

        /// <summary>Connects to each of P_TARGETS ("a.b.c.d:port", "[v6]:port"). A connection to a non-loopback address is an escape; one to a loopback address reaches the sandbox's own loopback, so the host's listener judges those.</summary>
        public const string Direct = """
            my @tried;
            for my $t (split " ", $ENV{P_TARGETS} // "") {
              my ($h, $p) = target($t); my ($s, $e) = tcp($h, $p, 3);
              if ($s) { close $s; verdict("SUCCEEDED", "connected to $t directly, past the proxy") unless loopback($h); push @tried, "$t: connected, to the sandbox's own loopback unless the host's listener saw it"; }
              else { push @tried, "$t: $e" } }
            verdict("BLOCKED", join("; ", @tried) || "no address to try");
            """;

        /// <summary>Sends each request of P_ASK ("GET http://host/" or "CONNECT host:port", separated by |) to the proxy at P_PROXY; anything but 403 or 400 is a request the proxy did not refuse.</summary>
        public const string Ask = """
            my @said;
            for my $q (split /\|/, $ENV{P_ASK} // "") {
              my ($method, $what) = split " ", $q; my ($host) = $method eq "GET" ? $what =~ m{^http://([^/]*)} : ($what);
              my ($s, $e) = tcp(target($ENV{P_PROXY} // "127.0.0.1:3128"), 5);
              verdict("INCONCLUSIVE", "nothing answers at the proxy's address $ENV{P_PROXY}: $e") unless $s;
              print $s "$method $what HTTP/1.1\r\nHost: $host\r\nConnection: close\r\n\r\n";
              my $l = line($s, 15); close $s; my ($code) = $l =~ m{^HTTP/1\.[01] (\d{3})};
              verdict("INCONCLUSIVE", "no answer in 15 s to $q") unless $code;
              verdict("SUCCEEDED", "the proxy answered $code to $q, not a refusal") unless $code == 403 || $code == 400;
              push @said, "$q: $code" }
            verdict("BLOCKED", "the proxy refused each: " . join("; ", @said));
            """;

        /// <summary>A DNS query over UDP and a TCP connection to port P_DNSPORT (53) of each resolver in P_DNS and the sandbox's /etc/resolv.conf, then getaddrinfo(P_LOOKUP): any answer, connection or address is DNS reached.</summary>
        public const string Dns = """
            my $port = $ENV{P_DNSPORT} || 53; my $name = $ENV{P_LOOKUP} // ""; my (%seen, @said);
            my @own; if (open(my $r, "<", "/etc/resolv.conf")) { @own = map { /^\s*nameserver\s+(\S+)/ ? $1 : () } <$r> }
            my $query = pack("n6", 0x5ab0, 0x0100, 1, 0, 0, 0) . join("", map { chr(length) . $_ } split /\./, $name || "example.com") . pack("x n n", 1, 1);
            for my $ns (grep { !$seen{$_}++ } split(" ", $ENV{P_DNS} // ""), @own) {
              my ($err, $ai) = getaddrinfo($ns, $port, { flags => AI_NUMERICHOST, socktype => SOCK_DGRAM });
              if ($err) { push @said, "$ns: not an address"; next }
              my ($u, $reply); if (socket($u, $ai->{family}, SOCK_DGRAM, 0) && connect($u, $ai->{addr}) && defined send($u, $query, 0)) {
                if (IO::Select->new($u)->can_read(2) && defined recv($u, $reply, 512, 0) && length $reply >= 12 && substr($reply, 0, 2) eq substr($query, 0, 2)) { verdict("SUCCEEDED", "$ns:$port answered a DNS query over UDP") }
                push @said, "UDP $ns:$port: sent, " . ($! ? "$!" : "no answer in 2 s") } else { push @said, "UDP $ns:$port: $!" }
              my ($s, $e) = tcp($ns, $port, 3);
              verdict("SUCCEEDED", "connected to $ns:$port over TCP") if $s; push @said, "TCP $ns:$port: $e" }
            if ($name ne "") {
              my $listed = 0; if (open(my $h, "<", "/etc/hosts")) { $listed = grep { !/^\s*#/ && /\s\Q$name\E(\s|$)/i } <$h> }
              if ($listed) { push @said, "$name is in the sandbox's /etc/hosts: no lookup of it proves anything" }
              else { my ($err, @res) = getaddrinfo($name, undef, { socktype => SOCK_STREAM });
                verdict("SUCCEEDED", "getaddrinfo resolved $name to " . (getnameinfo($res[0]{addr}, NI_NUMERICHOST))[1]) if !$err && @res;
                push @said, "getaddrinfo $name: $err" } }
            verdict("BLOCKED", join("; ", @said) || "no resolver to try");
            """;

        /// <summary>CONNECT P_CONNECT through the proxy, then a ClientHello naming P_SNI: a ServerHello, or an alert other than the proxy's access_denied, means it reached the server.</summary>
        public const string Sni = """
            my ($host, $port) = target($ENV{P_CONNECT}); my $sni = $ENV{P_SNI};
            my ($s, $e) = tcp(target($ENV{P_PROXY} // "127.0.0.1:3128"), 5);
            verdict("INCONCLUSIVE", "nothing answers at the proxy's address $ENV{P_PROXY}: $e") unless $s;
            print $s "CONNECT $host:$port HTTP/1.1\r\nHost: $host:$port\r\n\r\n";
            my $l = line($s, 15); my ($code) = $l =~ m{^HTTP/1\.[01] (\d{3})};
            verdict("INCONCLUSIVE", "the proxy answered " . ($code // "nothing") . " to CONNECT $host:$port, so there is no tunnel to send a ClientHello through (is $host up?)") unless ($code // 0) == 200;
            # Whatever followed the status line's head: the proxy sends nothing more before the ClientHello.
            while ($l !~ /\r?\n\r?\n/) { my $more = line($s, 5); last unless length $more; $l .= $more }
            # A TLS 1.2 ClientHello naming $sni, with what any TLS 1.2 server accepts (ECDHE and RSA suites, the common groups and signatures).
            my @cs = (0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0x009c, 0x009d, 0x002f, 0x0035, 0x00ff);
            my @sig = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601);
            my $ext = pack("n n n C n a*", 0, length($sni) + 5, length($sni) + 3, 0, length($sni), $sni) . pack("n5", 10, 6, 4, 0x001d, 0x0017)
              . pack("n n C C", 11, 2, 1, 0) . pack("n n n n*", 13, 2 * @sig + 2, 2 * @sig, @sig);
            my $body = pack("n a32 C n", 0x0303, join("", map { chr int rand 256 } 1 .. 32), 0, 2 * @cs) . pack("n*", @cs) . pack("C C n a*", 1, 0, length $ext, $ext);
            my $hello = pack("C a3 a*", 1, substr(pack("N", length $body), 1), $body);
            print $s pack("C n n a*", 0x16, 0x0301, length $hello, $hello);
            my $got = ""; my $sel = IO::Select->new($s);
            while (length $got < 7 && $sel->can_read(10)) { last unless sysread($s, $got, 7 - length $got, length $got) }
            verdict("BLOCKED", "the tunnel to $host:$port was closed without a reply to a ClientHello naming $sni") if $got eq "";
            my ($type, $x, $y) = unpack("C x4 C C", $got . "\0" x 7);
            verdict("SUCCEEDED", "a ServerHello came back from $host:$port to a ClientHello naming $sni") if $type == 0x16 && $x == 2;
            verdict("BLOCKED", "the proxy ended the tunnel with a TLS access_denied alert to a ClientHello naming $sni") if $type == 0x15 && $y == 49;
            verdict("SUCCEEDED", "the ClientHello naming $sni reached $host:$port, whose server answered " . ($type == 0x15 ? "with TLS alert $y" : sprintf("a record of type %d", $type)));
            """;

        /// <summary>As root: a link, an address, a default route, SOCK_DESTROY of the listener on 127.0.0.1:P_PROXYPORT, killing what holds it, binding the port, the policy file by its host path (P_POLICYFILE), lo down; the namespace compared before and after.</summary>
        public const string Tamper = """
            sub nl { my ($proto, $type, $flags, $payload) = @_;
              socket(my $s, 16, SOCK_RAW, $proto) or return "socket: $!";
              my $msg = pack("L S S L L", 16 + length($payload), $type, $flags | 5, 1, 0) . $payload;
              defined send($s, $msg, 0, pack("S x2 L L", 16, 0, 0)) or return "send: $!";
              IO::Select->new($s)->can_read(3) or return "no answer";
              defined recv($s, my $buf, 65536, 0) or return "recv: $!";
              my ($len, $t) = unpack("L S", $buf);
              return "answer of type $t" unless $t == 2;
              my $err = unpack("l", substr($buf, 16, 4)); return "done" if $err == 0; local $! = -$err; "$!" }
            sub attr { my ($type, $data) = @_; my $l = 4 + length $data; pack("S S", $l, $type) . $data . ("\0" x ((4 - $l % 4) % 4)) }
            sub snapshot { my $out = ""; for my $f (qw(/proc/net/dev /proc/net/route /proc/net/ipv6_route /proc/net/if_inet6 /proc/net/fib_trie /proc/net/tcp /proc/net/tcp6)) {
                open(my $h, "<", $f) or next; while (<$h>) {
                  if ($f =~ /dev$/) { next unless /:/; s/:.*//s; }
                  elsif ($f =~ /route$/) { my @c = split; @c = $f =~ /ipv6/ ? @c[0..5, 8, 9] : @c[0..3, 6, 7]; $_ = "@c"; }
                  elsif ($f =~ /tcp6?$/) { my @c = split; next unless $c[3] && $c[3] eq "0A"; $_ = "listen $c[1] $c[9]"; }
                  $out .= "$f: $_\n" } }
              socket(my $s, AF_INET, SOCK_DGRAM, 0); my $ifr = pack("a16 x24", "lo");
              $out .= "lo flags: " . (ioctl($s, 0x8913, $ifr) ? unpack("x16 s", $ifr) : "?") . "\n"; $out }
            my $port = $ENV{P_PROXYPORT} || 3128; my $tok = substr($ENV{P_TOKEN} || "probe", 0, 8);
            my $inode; if (open(my $t, "<", "/proc/net/tcp")) { while (<$t>) { my @c = split; $inode = $c[9] if $c[1] eq sprintf("0100007F:%04X", $port) && $c[3] eq "0A" } }
            my $before = snapshot(); my (@did, @said);
            sub step { my ($what, $r) = @_; ($r eq "done" ? push(@did, $what) : push(@said, "$what: $r")) }
            for my $kind (qw(dummy veth bridge)) {
              my $r = nl(0, 16, 0x600, pack("C x S l L L", 0, 0, 0, 0, 0) . attr(3, "as$tok\0") . attr(18, attr(1, "$kind\0")));
              step("add a $kind link", $r); last unless $r eq "Operation not supported"; }
            my $addr = inet_aton("192.0.2.9");
            step("add 192.0.2.9/24 to lo", nl(0, 20, 0x600, pack("C C C C L", 2, 24, 0, 0, 1) . attr(2, $addr) . attr(1, $addr)));
            step("add a default route through lo", nl(0, 24, 0x600, pack("C8 L", 2, 0, 0, 0, 254, 4, 253, 1, 0) . attr(4, pack("l", 1))));
            step("destroy the listening socket on 127.0.0.1:$port (SOCK_DESTROY)", my $destroyed = nl(4, 21, 0, pack("C C C C L", 2, 6, 0, 0, 1 << 10) . pack("n n a16 a16 L L L", $port, 0, inet_aton("127.0.0.1"), "", 0, 0xffffffff, 0xffffffff)));
            select(undef, undef, undef, 0.5) if $destroyed eq "done"; # a proxy whose socket is gone ends: its port is free then
            # Whatever holds the namespace's listening socket: the proxy, if it is in view (never anything by its name).
            my (@pids, $seen);
            for my $p (grep { m{/\d+$} } glob "/proc/[0-9]*") { next if $p eq "/proc/$$"; $seen++;
              my $holds = $inode && grep { (readlink($_) // "") eq "socket:[$inode]" } glob "$p/fd/*";
              push @pids, $p =~ s{/proc/}{}r if $holds; }
            if (@pids) { step("kill the proxy (pid @pids)", kill(9, @pids) ? "done" : "$!") } else { push @said, "kill the proxy: not among the $seen processes in view" }
            socket(my $b, AF_INET, SOCK_STREAM, 0); setsockopt($b, SOL_SOCKET, SO_REUSEADDR, 1); setsockopt($b, SOL_SOCKET, 15, 1);
            step("bind 127.0.0.1:$port itself", bind($b, pack_sockaddr_in($port, inet_aton("127.0.0.1"))) && listen($b, 1) ? "done" : "$!");
            # Its policy by the host path: the proxy rereads it on SIGHUP (which root here cannot send it), so a write is enough to count.
            if (my $pf = $ENV{P_POLICYFILE}) { if (open(my $f, ">>", $pf)) { print $f "0.0.0.0/0\n"; close $f; step("append 0.0.0.0/0 to the proxy's policy file $pf", "done") } else { push @said, "append to the proxy's policy file $pf: $!" } }
            step("take lo down", nl(0, 16, 0, pack("C x S l L L", 0, 0, 1, 0, 1)));
            my $after = snapshot();
            my %was = map { $_ => 1 } split /\n/, $before; my %new; my @new = grep { !$was{$_} && !$new{$_}++ } split /\n/, $after;
            my $changed = $before eq $after ? "" : " (the namespace changed: " . (join(", ", @new[0 .. ($#new < 5 ? $#new : 5)]) || "entries went") . ")";
            verdict("SUCCEEDED", "as uid $>: did " . join(", ", @did) . $changed . "; " . join("; ", @said)) if @did || $changed;
            verdict("BLOCKED", "as uid $>: " . join("; ", @said) . "; the namespace is as it was");
            """;
    }
}
