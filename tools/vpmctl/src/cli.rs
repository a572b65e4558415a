//! The command line: what each command takes, and its help.

use clap::{CommandFactory, Parser, Subcommand};

use crate::aid::Aid;
use crate::{config, mapping, proto, rule};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Control vpm, the virtual port multiplexing kernel module"
)]
pub struct Cli {
    // One flag for every command, before or after it: add, show, rule
    // show, config and status print one line of JSON, monitor one object
    // per line; in a batch it holds for every line.  save prints JSON
    // anyway, and commands that print nothing ignore it.  (A plain
    // comment: the help is the one line below.)
    #[arg(
        long,
        global = true,
        display_order = 100,
        help = "Print JSON instead of text (save always prints JSON)"
    )]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Allocate the anonymous port of an AID's fixed port (or show the one it has).
    #[command(after_help = "Examples:
  vpmctl add --aid a --port 9000
  vpmctl add --aid b --port 9000 --proto tcp --wait 5s --json
  vpmctl add --aid web --port 443 --cgroup /sys/fs/cgroup/web")]
    Add {
        /// Application id: 1-31 characters of A-Z a-z 0-9 . _ -
        #[arg(long)]
        aid: Aid,
        /// The fixed port the application uses.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// Protocols to multiplex.
        #[arg(long, value_enum, default_value_t = proto::Proto::Both)]
        proto: proto::Proto,
        /// Ask for exactly this anonymous port (restoring a saved state).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        anon_port: Option<u16>,
        /// When no port is free, wait this long (e.g. 5s, 500ms; at most
        /// 60s) for one to be released instead of failing at once.
        #[arg(long, value_parser = mapping::parse_wait)]
        wait: Option<u32>,
        /// Local clients in this cgroup v2 (or below it) reach this AID's
        /// instance when no source rule claims them (/sys/fs/cgroup/... or
        /// a path relative to the cgroup2 root).
        #[arg(long, value_parser = mapping::cgroup_path)]
        cgroup: Option<String>,
    },
    /// Source rules: steer a fixed port's packets to an AID by client
    /// address and port.
    #[command(after_help = "Examples:
  vpmctl rule add --port 9000 --from 10.0.0.0/8 --aid a
  vpmctl rule show")]
    Rule {
        #[command(subcommand)]
        cmd: RuleCmd,
    },
    /// Release the allocation of an AID's fixed port.
    #[command(after_help = "Example:
  vpmctl del --aid a --port 9000")]
    Del {
        /// Application id whose allocation goes.
        #[arg(long)]
        aid: Aid,
        /// Its fixed port.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
    },
    /// List the allocations of this network namespace, with their counters.
    #[command(after_help = "Examples:
  vpmctl show
  vpmctl show --json")]
    Show,
    /// Release every allocation and rule of this network namespace.
    #[command(after_help = "Example:
  vpmctl flush")]
    Flush,
    /// Print allocation and configuration changes as they happen (until
    /// interrupted).
    #[command(after_help = "Example:
  vpmctl monitor --json")]
    Monitor,
    /// Print the namespace's settings and allocations as JSON.
    #[command(after_help = "Example:
  vpmctl save > /etc/vpm/state.json")]
    Save,
    /// Recreate a saved state (same anonymous ports); all or nothing.
    #[command(after_help = "Example:
  vpmctl restore /etc/vpm/state.json")]
    Restore {
        /// A file written by `vpmctl save` ("-" for standard input).
        file: std::path::PathBuf,
    },
    /// Run the commands in FILE ("-" for standard input), one per line,
    /// over one connection.  Every line is parsed before any runs; running
    /// stops at the first failure, naming its line.
    #[command(after_help = "Example:
  printf 'add --aid a --port 9000\\nadd --aid b --port 9000\\n' | vpmctl batch -")]
    Batch {
        /// Commands as on the command line without "vpmctl"; blank lines
        /// and lines starting with # are skipped.
        file: std::path::PathBuf,
    },
    /// Show or change the anonymous port range and the entry limit.
    #[command(after_help = "Examples:
  vpmctl config
  vpmctl config --range 20000-29999 --max-entries 4096")]
    Config {
        /// New anonymous port range, LO-HI.
        #[arg(long, value_parser = config::parse_range)]
        range: Option<(u16, u16)>,
        /// New limit on allocations.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max_entries: Option<u32>,
    },
    /// Show the module version, hooks and counters of this network namespace.
    #[command(after_help = "Examples:
  vpmctl status
  vpmctl status --json")]
    Status,
    /// Print the namespace's counters and every allocation's in the
    /// Prometheus text format, or serve them over HTTP for scraping.
    ///
    /// Every metric has the label netns: the inode number of the network
    /// namespace vpmctl runs in, as `stat -L -c %i /proc/self/ns/net` and
    /// `lsns -t net` show it (`ip netns exec NS vpmctl metrics` reports
    /// NS).  Namespace metrics: vpm_info{version} (always 1),
    /// vpm_netfilter_hooks, vpm_allocations and vpm_flows_active (gauges),
    /// and the counters of `vpmctl status` as vpm_packets_*_total,
    /// vpm_icmp_errors_translated_total and vpm_flows_*_total.  Each
    /// allocation's counters of `vpmctl show`, with the labels aid, port,
    /// anon_port and proto (tcp, udp or tcp,udp):
    /// vpm_allocation_{in,out}_packets_total and
    /// vpm_allocation_{in,out}_bytes_total (bytes from the IP header on).
    /// Needs no privilege (but a port below 1024 to listen on), and
    /// --json does not change the output.
    #[command(after_help = "Examples:
  vpmctl metrics
  vpmctl metrics --listen 127.0.0.1:9477
  ip netns exec blue vpmctl metrics --listen [::1]:9477")]
    Metrics {
        /// Serve GET /metrics on this address instead of printing once
        /// (until killed); every scrape reads the kernel anew, and a
        /// failed read answers 503 (module not loaded) or 500 with the
        /// error, the server running on.  Port 0 picks a free port; the
        /// address is logged on standard error.
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Run the cooperative agent of this network namespace: negotiate
    /// fixed ports with peer hosts' agents (docs/COOPERATIVE.md).  It
    /// answers peers' requests for the ports the configuration exports,
    /// asks peers for the mappings listed under [[map]], renews both,
    /// logs one line per event on standard error and records its state in
    /// a file that `vpmctl peer show` reads.  Runs until SIGTERM; the
    /// kernel's allocations outlive it.
    #[command(after_help = "Example:
  vpmctl agent --config /etc/vpm/agent.toml")]
    Agent {
        /// The configuration file (TOML: listen, state_file,
        /// max_lifetime, max_mappings_per_peer, [[peer]], [[export]], [[map]]).
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
    },
    /// Cooperative peers: the agent's negotiated mappings, and the peers
    /// whose replies carry an allocation's anonymous port.
    #[command(after_help = "Examples:
  vpmctl peer show
  vpmctl peer add --aid a --port 9000 --address 192.0.2.7")]
    Peer {
        #[command(subcommand)]
        cmd: PeerCmd,
    },
    /// Run an unmodified program as AID: its binds of the fixed ports
    /// become binds of the AID's anonymous ports (cgroup socket hooks),
    /// and it is started only once that is in place.
    #[command(after_help = "Examples:
  vpmctl exec --aid blue --port 9000 -- python3 -m http.server 9000
  vpmctl exec --aid green --port 53 --proto udp --release -- dnsd")]
    Exec {
        /// Application id the program runs as (its allocations, its cgroup).
        #[arg(long)]
        aid: Aid,
        /// A fixed port the program binds (repeat for more).
        #[arg(long = "port", required = true, value_parser = clap::value_parser!(u16).range(1..))]
        ports: Vec<u16>,
        /// Protocols to multiplex.
        #[arg(long, value_enum, default_value_t = proto::Proto::Both)]
        proto: proto::Proto,
        /// When no port is free, wait this long (at most 60s) instead of
        /// failing; the program starts only once it has its ports.
        #[arg(long, value_parser = mapping::parse_wait)]
        wait: Option<u32>,
        /// Release the allocations once the last process of the AID's
        /// group has exited (without it they stay, as `add`'s do).
        #[arg(long)]
        release: bool,
        /// The cgroup v2 directory AIDs' groups are made in (default:
        /// vpm below the cgroup2 mount; a namespace other than the host's
        /// gets a net-INODE level in between).
        #[arg(long, env = "VPM_CGROUP_PARENT")]
        cgroup_parent: Option<std::path::PathBuf>,
        /// The program and its arguments, after "--".
        #[arg(required = true, last = true, value_name = "CMD")]
        cmd: Vec<std::ffi::OsString>,
    },
    /// Print a shell completion script for vpmctl.
    #[command(after_help = "Examples:
  vpmctl completions bash > /etc/bash_completion.d/vpmctl
  vpmctl completions zsh > /usr/local/share/zsh/site-functions/_vpmctl
  vpmctl completions fish > /etc/fish/completions/vpmctl.fish")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (vpmctl.8, and vpmctl-COMMAND.8 for each
    /// command) into DIR.
    #[command(after_help = "Example:
  vpmctl man /usr/local/share/man/man8")]
    Man {
        /// The directory to write them into (it must exist).
        dir: std::path::PathBuf,
    },
    /// The keeper `exec` leaves behind (internal).
    #[command(hide = true)]
    Keep {
        #[arg(long)]
        aid: Aid,
        #[arg(long)]
        cgroup_parent: std::path::PathBuf,
        #[arg(long)]
        release: bool,
        #[arg(long = "port")]
        ports: Vec<u16>,
        /// The process that execs the command.
        #[arg(long)]
        pid: u32,
        /// Start the keeper in the background and return.
        #[arg(long)]
        detach: bool,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum RuleCmd {
    /// Packets for PORT from FROM belong to AID; without --from, AID is
    /// the port's default.  The longest prefix wins, then a rule with a
    /// source port; a rule with the same FROM is refused.
    #[command(after_help = "Examples:
  vpmctl rule add --port 9000 --from 10.0.0.0/8 --aid a
  vpmctl rule add --port 9000 --from 2001:db8::/32 --aid b
  vpmctl rule add --port 9000 --aid a")]
    Add {
        /// Fixed port the rule is for.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// ADDR[/LEN][:PORT], [V6ADDR[/LEN]]:PORT or :PORT.
        #[arg(long, value_parser = rule::Source::parse)]
        from: Option<rule::Source>,
        /// Application id whose allocation on PORT these sources reach.
        #[arg(long)]
        aid: Aid,
    },
    /// Remove the rule for PORT and FROM (without --from: the default).
    #[command(after_help = "Examples:
  vpmctl rule del --port 9000 --from 10.0.0.0/8
  vpmctl rule del --port 9000")]
    Del {
        /// Fixed port of the rule.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// The rule's FROM, as it was added (without it: the default rule).
        #[arg(long, value_parser = rule::Source::parse)]
        from: Option<rule::Source>,
    },
    /// List the rules of this network namespace.
    #[command(after_help = "Example:
  vpmctl rule show --json")]
    Show,
}

/// The command line's definition, with what the derive cannot say: the
/// exit statuses, built from the table the code uses.
pub fn command() -> clap::Command {
    let mut text = String::from("Exit status:\n");
    for (codes, meaning) in crate::error::exit::MEANINGS {
        let codes: Vec<String> = codes.iter().map(i32::to_string).collect();
        text.push_str(&format!("  {:<9} {meaning}\n", codes.join(", ")));
    }
    text.push_str("\nvpmctl COMMAND --help shows a command's options and examples.");
    Cli::command().after_long_help(text)
}

/// Parses the process's arguments against [`command`].
pub fn parse() -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    Cli::from_arg_matches(&command().try_get_matches()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(line: &str) -> Cli {
        let args = std::iter::once("vpmctl").chain(line.split_whitespace());
        Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn json_goes_before_or_after_the_command() {
        for cmd in [
            "add --aid a --port 9000",
            "show",
            "rule show",
            "config",
            "status",
            "monitor",
            "metrics",
        ] {
            assert!(parse(&format!("{cmd} --json")).json, "{cmd} --json");
            assert!(parse(&format!("--json {cmd}")).json, "--json {cmd}");
            assert!(!parse(cmd).json, "{cmd}");
        }
        assert!(matches!(parse("status --json").command, Command::Status));
        assert!(matches!(
            parse("rule --json show").command,
            Command::Rule { cmd: RuleCmd::Show }
        ));
    }

    /// Command lines the VM tests and the README use keep parsing.
    #[test]
    fn existing_command_lines_still_parse() {
        for line in [
            "status --json",
            "add --aid a --port 9000 --json",
            "add --aid b7 --port 9000 --anon-port 20001 --json",
            "add --aid second --port 9000 --wait 60s --json",
            "add --aid a --port 9000 --proto tcp --cgroup /sys/fs/cgroup/vpm/a",
            "del --aid a --port 9000",
            "show",
            "show --json",
            "flush",
            "monitor --json",
            "save",
            "restore /tmp/vpm-state.json",
            "batch /tmp/vpm-batch",
            "config --range 20000-29999 --max-entries 100 --json",
            "rule add --port 9000 --from 10.0.0.0/8:5000 --aid a",
            "rule del --port 9000",
            "rule show --json",
            "exec --aid blue --port 9000 -- python3 -m http.server 9000",
            "exec --aid b --port 9000 --port 9001 --proto tcp --wait 5s --release -- srv -p 9000",
            "exec --aid b --port 53 --cgroup-parent /sys/fs/cgroup/apps/vpm -- dnsd",
            "metrics",
            "metrics --listen 127.0.0.1:9477",
            "metrics --listen [::]:0",
        ] {
            parse(line);
        }
    }

    #[test]
    fn metrics_listens_on_an_address_and_port() {
        let Command::Metrics { listen } = parse("metrics --listen [::1]:9477").command else {
            panic!("not metrics");
        };
        assert_eq!(listen, Some("[::1]:9477".parse().unwrap()));
        assert!(matches!(
            parse("metrics").command,
            Command::Metrics { listen: None }
        ));
        for bad in ["localhost:9477", "9477", "127.0.0.1", "127.0.0.1:99999"] {
            assert!(
                Cli::try_parse_from(["vpmctl", "metrics", "--listen", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn exec_takes_ports_and_the_command_after_the_dashes() {
        let Command::Exec {
            aid,
            ports,
            proto,
            release,
            cmd,
            ..
        } = parse("exec --aid b --port 9000 --port 53 --proto udp --release -- srv --port 9000 -v")
            .command
        else {
            panic!("not exec");
        };
        assert_eq!(aid.as_str(), "b");
        assert_eq!(ports, [9000, 53]);
        assert_eq!(proto, proto::Proto::Udp);
        assert!(release);
        assert_eq!(
            cmd,
            ["srv", "--port", "9000", "-v"].map(std::ffi::OsString::from)
        );
    }

    #[test]
    fn exec_needs_a_port_and_a_command() {
        for line in [
            "exec --aid b -- srv",
            "exec --aid b --port 9000",
            "exec --aid b --port 9000 srv",
            "exec --aid b --port 0 -- srv",
        ] {
            let args = std::iter::once("vpmctl").chain(line.split_whitespace());
            assert!(Cli::try_parse_from(args).is_err(), "{line}");
        }
    }

    #[test]
    fn add_rejects_port_zero_and_bad_aids() {
        assert!(Cli::try_parse_from(["vpmctl", "add", "--aid", "a", "--port", "0"]).is_err());
        let e = Cli::try_parse_from(["vpmctl", "add", "--aid", "a b", "--port", "1"]).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "error: invalid value 'a b' for '--aid <AID>': 'a b' is not an AID: use 1 to 31 characters"
            ),
            "{e}"
        );
        let cli = Cli::try_parse_from(["vpmctl", "add", "--aid", "a", "--port", "9000"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Add {
                proto: proto::Proto::Both,
                anon_port: None,
                ..
            }
        ));
    }

    #[test]
    fn rule_commands() {
        let cli = Cli::try_parse_from([
            "vpmctl",
            "rule",
            "add",
            "--port",
            "9000",
            "--from",
            "10.0.0.0/8",
            "--aid",
            "a",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Rule {
                cmd: RuleCmd::Add {
                    port: 9000,
                    from: Some(_),
                    ..
                }
            }
        ));
        let cli =
            Cli::try_parse_from(["vpmctl", "rule", "add", "--port", "9000", "--aid", "a"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Rule {
                cmd: RuleCmd::Add { from: None, .. }
            }
        ));
        assert!(Cli::try_parse_from([
            "vpmctl", "rule", "add", "--port", "9000", "--from", "x", "--aid", "a"
        ])
        .is_err());
    }

    /// Every visible command's help ends with examples, and every
    /// example parses (up to a redirection or pipe, after "vpmctl").
    #[test]
    fn every_command_has_examples_that_parse() {
        fn walk(cmd: &clap::Command, path: &str, n: &mut usize) {
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let name = format!("{path} {}", sub.get_name());
                let help = sub
                    .get_after_help()
                    .unwrap_or_else(|| panic!("{name}: no examples"))
                    .to_string();
                assert!(help.starts_with("Example"), "{name}: {help}");
                let mut lines = 0;
                for line in help.lines().skip(1) {
                    let at = line.find("vpmctl ").expect(line);
                    let cmdline = line[at + "vpmctl ".len()..]
                        .split(['>', '|'])
                        .next()
                        .unwrap();
                    let args = std::iter::once("vpmctl").chain(cmdline.split_whitespace());
                    let cli = Cli::try_parse_from(args)
                        .unwrap_or_else(|e| panic!("{name}: example '{line}': {e}"));
                    let words: Vec<_> = name.split_whitespace().skip(1).collect();
                    assert!(
                        cmdline
                            .split_whitespace()
                            .take(words.len())
                            .eq(words.iter().copied()),
                        "{name}: example '{line}' runs another command"
                    );
                    drop(cli);
                    lines += 1;
                }
                assert!(lines > 0, "{name}: no example lines");
                *n += 1;
                walk(sub, &name, n);
            }
        }
        let mut n = 0;
        walk(&command(), "vpmctl", &mut n);
        assert!(n >= 17, "only {n} commands walked");
    }

    #[test]
    fn help_lists_the_exit_statuses_the_code_uses() {
        let help = command().render_long_help().to_string();
        use crate::error::exit;
        for code in [
            exit::KERNEL,
            exit::USAGE,
            exit::NOT_LOADED,
            exit::NETLINK,
            exit::HOST,
        ] {
            assert!(
                help.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{code} "))),
                "exit status {code} missing from:\n{help}"
            );
        }
    }

    #[test]
    fn unknown_command_is_a_usage_error() {
        let err = Cli::try_parse_from(["vpmctl", "frobnicate"]).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
    }
}

/// An allocation's cooperative peer, as `peer add` and `peer del` name it.
#[derive(clap::Args, Debug, Clone)]
pub struct PeerOf {
    /// Application id of the allocation.
    #[arg(long)]
    pub aid: Aid,
    /// Its fixed port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// The peer host's address (IPv4 or IPv6).
    #[arg(long)]
    pub address: std::net::IpAddr,
}

#[derive(Subcommand, Debug, Clone)]
pub enum PeerCmd {
    /// Make ADDRESS a cooperative peer of an allocation: on flows it
    /// sends to the anonymous port itself, replies carry the anonymous
    /// port, which its sockets are connected to.  The agent manages the
    /// peers of the allocations it exports, and its peers' addresses
    /// everywhere: it sets and removes those itself.
    #[command(after_help = "Examples:
  vpmctl peer add --aid a --port 9000 --address 192.0.2.7
  vpmctl peer add --aid a --port 9000 --address 2001:db8::7")]
    Add(PeerOf),
    /// Remove a cooperative peer of an allocation: replies to it carry
    /// the fixed port again.
    #[command(after_help = "Example:
  vpmctl peer del --aid a --port 9000 --address 192.0.2.7")]
    Del(PeerOf),
    /// The mappings this namespace's agent negotiated, both sides: asked
    /// of peers (client) and granted to peers (server), with the
    /// negotiated port and the lifetime left.
    #[command(after_help = "Examples:
  vpmctl peer show
  vpmctl peer show --json --state-file /run/vpm/agent.json")]
    Show {
        /// The agent's state file (default: this network namespace's,
        /// /run/vpm/agent-net<inode>.json).
        #[arg(long, value_name = "FILE")]
        state_file: Option<std::path::PathBuf>,
    },
}
