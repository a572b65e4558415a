//! `vpmctl man` and `vpmctl completions`: both generated from the clap
//! definitions the parser uses ([`crate::cli::command`]), so the manual,
//! the completions and the parser cannot disagree.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap_mangen::Man;

use crate::error::{Error, Result};

/// Section 8: system administration commands.
const SECTION: &str = "8";
const MANUAL: &str = "System Manager's Manual";

/// Writes vpmctl.8 and one vpmctl-COMMAND.8 per visible command (rule's
/// included) into `dir`; returns the files written.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut cmd = crate::cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_tree(&cmd, dir, &mut written).map_err(|e| {
        Error::Input(format!(
            "cannot write the manual pages into {}: {e}",
            dir.display()
        ))
    })?;
    Ok(written)
}

fn write_tree(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let man = Man::new(cmd.clone()).section(SECTION).manual(MANUAL);
    let path = dir.join(man.get_filename());
    let mut file = std::fs::File::create(&path)?;
    render(&man, cmd, &mut file)?;
    file.flush()?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub, dir, written)?;
    }
    Ok(())
}

/// clap_mangen's sections, with the text after the options (examples,
/// exit statuses) under their own headings instead of its "EXTRA".
pub fn render(man: &Man, cmd: &clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(w)?;
    }
    if let Some(after) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
        write_after(&after.to_string(), w)?;
    }
    if cmd.get_version().is_some() {
        man.render_version_section(w)?;
    }
    Ok(())
}

/// The after-help text: blocks that start with a "Heading:" line become
/// sections of that name, their lines kept as written (no filling).
fn write_after(text: &str, w: &mut dyn Write) -> std::io::Result<()> {
    for block in text.split("\n\n") {
        let (head, body) = match block.split_once('\n') {
            Some((h, b)) if h.ends_with(':') => (h.trim_end_matches(':'), b),
            _ => ("NOTES", block),
        };
        writeln!(w, ".SH \"{}\"", head.to_uppercase())?;
        writeln!(w, ".nf")?;
        for line in body.lines() {
            writeln!(w, "{}", escape(line))?;
        }
        writeln!(w, ".fi")?;
    }
    Ok(())
}

/// A line of text as roff reads it literally: backslashes and hyphens
/// escaped, and a leading '.' or '\'' kept from being a request.
fn escape(line: &str) -> String {
    let s = line.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// The completion script for `shell`.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = visible(&crate::cli::command());
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "vpmctl", &mut out);
    out
}

/// Prints the completion script for `shell` on standard output (a reader
/// that stops early, `| head`, is not an error).
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    match std::io::stdout().write_all(&completion_script(shell)) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Input(format!(
            "cannot write the completion script: {e}"
        ))),
        _ => Ok(()),
    }
}

/// `cmd` without its hidden commands (the generators list them all; clap
/// cannot remove a subcommand, so the tree is rebuilt).
fn visible(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new(cmd.get_name().to_owned())
        .args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(visible),
        );
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(v) = cmd.get_version() {
        out = out.version(v.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(cmd: &clap::Command) -> String {
        let man = Man::new(cmd.clone()).section(SECTION);
        let mut out = Vec::new();
        render(&man, cmd, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_main_page_lists_commands_exit_statuses_and_version() {
        let mut cmd = crate::cli::command();
        cmd.build();
        let p = page(&cmd);
        assert!(
            p.starts_with(".ie \\n(.g .ds Aq \\(aq") || p.contains(".TH vpmctl 8"),
            "{p}"
        );
        assert!(p.contains(".TH vpmctl 8"), "{p}");
        for sub in ["add", "rule", "del", "exec", "completions"] {
            assert!(
                p.contains(&format!("vpmctl\\-{sub}(8)")),
                "{sub} missing:\n{p}"
            );
        }
        assert!(
            !p.contains("vpmctl\\-keep"),
            "the internal keeper is listed:\n{p}"
        );
        assert!(p.contains(".SH \"EXIT STATUS\""), "{p}");
        assert!(p.contains("the vpm module is not loaded"), "{p}");
        assert!(!p.contains("EXTRA"), "{p}");
    }

    #[test]
    fn pages_are_written_for_every_visible_command() {
        let dir = std::env::temp_dir().join(format!("vpmctl-man-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let written = write_pages(&dir).unwrap();
        let names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "vpmctl.8",
            "vpmctl-add.8",
            "vpmctl-rule.8",
            "vpmctl-rule-add.8",
            "vpmctl-man.8",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("keep")), "{names:?}");
        let add = std::fs::read_to_string(dir.join("vpmctl-add.8")).unwrap();
        assert!(add.contains(".SH \"EXAMPLES\""), "{add}");
        assert!(
            add.contains("vpmctl add \\-\\-aid a \\-\\-port 9000"),
            "{add}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn roff_requests_in_text_are_escaped() {
        assert_eq!(escape(".x"), "\\&.x");
        assert_eq!(escape("a\\nb -c"), "a\\enb \\-c");
    }

    #[test]
    fn every_shell_gets_a_script_naming_the_commands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let s = String::from_utf8(completion_script(shell)).unwrap();
            for word in [
                "restore",
                "monitor",
                "max-entries",
                "cgroup-parent",
                "anon-port",
                "metrics",
                "listen",
            ] {
                assert!(s.contains(word), "{shell:?}: no {word}");
            }
            // The internal keeper (and its --detach) is not offered.
            for word in ["keep", "detach"] {
                assert!(!s.contains(word), "{shell:?}: offers {word}");
            }
        }
    }
}
