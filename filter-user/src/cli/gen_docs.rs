//! `portguard gen-docs --out DIR` (hidden; `cargo xtask docs` runs it):
//! shell completions (bash, zsh, fish) and man pages, generated from the
//! same clap definitions the binary parses with, so they cannot drift.
use std::{fs, path::PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write `completions/` and `man/` into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let mut cmd = super::Cli::command();
    cmd.build();
    let completions = a.out.join("completions");
    let man = a.out.join("man");
    for d in [&completions, &man] {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut cmd, "portguard", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
        println!("{}", path.display());
    }
    // portguard.1, then portguard-<command>.1 for every visible subcommand
    // (after build(), a subcommand's display name is `portguard-<command>`).
    let mut pages = vec![("portguard".to_string(), cmd.clone())];
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = sub
            .get_display_name()
            .map_or_else(|| format!("portguard-{}", sub.get_name()), str::to_string);
        pages.push((name, sub.clone()));
    }
    for (name, page) in pages {
        let path = man.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut buf)
            .with_context(|| format!("rendering {name}.1"))?;
        fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_completions_and_pages() {
        let out = std::env::temp_dir().join(format!("pg-gen-docs-{}", std::process::id()));
        super::run(super::Args { out: out.clone() }).unwrap();
        let bash = std::fs::read_to_string(out.join("completions/portguard.bash")).unwrap();
        assert!(
            bash.contains("--allow-vlan") && bash.contains("monitor"),
            "{bash}"
        );
        let page = std::fs::read_to_string(out.join("man/portguard-apply.1")).unwrap();
        assert!(page.contains("dry\\-run"), "{page}");
        assert!(!out.join("man/portguard-help.1").exists());
        assert!(!out.join("man/portguard-gen-docs.1").exists());
        std::fs::remove_dir_all(&out).unwrap();
    }
}
