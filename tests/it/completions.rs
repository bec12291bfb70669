//! `completions SHELL` and `man`: generated from the clap definitions, so every command that
//! `--help` lists (nested ones included) is in each completion script and in the man page.

use crate::util::*;

/// The command names `kargo-export ARGS --help` lists under "Commands:" (without `help`).
fn commands_of(args: &[&str]) -> Vec<String> {
    let output = binary().args(args).arg("--help").output().unwrap();
    let help = success(&output);
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path: `["export"]`, `["export", "report"]`, ...
fn every_command() -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for top in commands_of(&[]) {
        let nested = commands_of(&[top.as_str()]);
        all.push(vec![top.clone()]);
        all.extend(nested.into_iter().map(|sub| vec![top.clone(), sub]));
    }
    all
}

#[test]
fn every_shell_completes_every_command() {
    let commands = every_command();
    for expected in ["export", "inspect", "completions", "man"] {
        assert!(commands.iter().any(|c| c == &[expected]), "{commands:?}");
    }
    assert!(commands.contains(&vec!["export".to_owned(), "url".to_owned()]));
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let script = success(&binary().args(["completions", shell]).output().unwrap());
        assert!(script.len() > 1000, "{shell}: {script}");
        for path in &commands {
            let name = path.last().unwrap();
            assert!(script.contains(name.as_str()), "{shell} lacks {path:?}");
        }
        // Flags are completed too.
        assert!(script.contains("on-schema-change"), "{shell}");
    }
    let bad = binary().args(["completions", "tcsh"]).output().unwrap();
    assert!(failure(&bad, 2).contains("tcsh"));
}

#[test]
fn the_man_page_is_roff_and_names_every_command() {
    let page = success(&binary().arg("man").output().unwrap());
    assert!(
        page.contains(".TH kargo-export 1"),
        "{}",
        &page[..200.min(page.len())]
    );
    assert!(page.contains(".SH SYNOPSIS") && page.contains(".SH OPTIONS"));
    for path in every_command() {
        let line = format!("kargo\\-export {}:", path.join(" ").replace('-', "\\-"));
        assert!(page.contains(&line), "man page lacks {line}");
    }
}
