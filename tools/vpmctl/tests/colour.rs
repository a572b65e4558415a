//! vpmctl colours only its help and its usage errors (clap's styles), only
//! on a terminal that is not `TERM=dumb`, and never with `NO_COLOR` set:
//! what it prints for programs (tables, JSON, metrics) has no escapes, and
//! neither has anything that goes to a pipe or a file.

use std::process::Command;

const ESC: u8 = 0x1b;

fn vpmctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vpmctl"));
    c.env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("TERM", "xterm");
    c
}

#[test]
fn no_colour_through_a_pipe() {
    let help = vpmctl().arg("--help").output().expect("vpmctl runs");
    assert!(help.status.success());
    assert!(!help.stdout.is_empty() && !help.stdout.contains(&ESC));

    let usage = vpmctl()
        .arg("no-such-command")
        .output()
        .expect("vpmctl runs");
    assert!(!usage.status.success());
    assert!(!usage.stderr.is_empty() && !usage.stderr.contains(&ESC));
}

/// `vpmctl ARGS`'s output on a pseudo-terminal (util-linux `script`),
/// `None` where `script` cannot run.
fn on_a_terminal(args: &str, no_color: bool) -> Option<Vec<u8>> {
    let bin = env!("CARGO_BIN_EXE_vpmctl");
    let mut c = Command::new("script");
    c.args(["-qec", &format!("{bin} {args}"), "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("TERM", "xterm");
    if no_color {
        c.env("NO_COLOR", "1");
    }
    c.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| o.stdout)
}

#[test]
fn colour_on_a_terminal_unless_no_color() {
    let Some(tty) = on_a_terminal("--help", false) else {
        eprintln!("script(1) cannot run here: the terminal half is skipped");
        return;
    };
    assert!(tty.contains(&ESC), "help on a terminal is styled");
    let plain = on_a_terminal("--help", true).expect("script ran once already");
    assert!(
        !plain.is_empty() && !plain.contains(&ESC),
        "NO_COLOR turns the styles off"
    );
}
