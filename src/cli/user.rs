//! `authgate user add NAME [--roles a,b]` (password from stdin), `user disable NAME`, and `hash-password`.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use authgate::auth::password;
use authgate::store::User;

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from stdin (not echoed on a terminal)
    Add {
        name: String,
        /// Comma-separated roles (default: login.default_roles)
        #[arg(long, value_delimiter = ',')]
        roles: Option<Vec<String>>,
    },
    /// Disable a user: logins and refreshes are refused from then on
    Disable { name: String },
}

pub fn user(config_path: &Path, command: &UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add { name, roles } => {
            if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
                bail!("a user name is 1 to 256 characters, without control characters");
            }
            let secret = read_password()?;
            super::with_store(config_path, async |config, store| {
                password::check_length(&secret, config.login.min_password_length)?;
                let roles = roles.clone().unwrap_or_else(|| config.login.default_roles.clone());
                let phc = tokio::task::spawn_blocking(move || password::hash(&secret)).await??;
                let user = User { name: name.clone(), password_hash: phc, roles, disabled: false };
                if !store.create_user(&user).await.context("the store refused the user")? {
                    bail!("user `{name}` already exists");
                }
                eprintln!("added user `{name}` ({} store)", store.backend());
                Ok(ExitCode::SUCCESS)
            })
        }
        UserCommand::Disable { name } => super::with_store(config_path, async |_, store| {
            if !store.set_disabled(name, true).await.context("the store refused the change")? {
                bail!("no user `{name}`");
            }
            eprintln!("disabled user `{name}`");
            Ok(ExitCode::SUCCESS)
        }),
    }
}

/// `authgate hash-password`: for `users_file` entries.
pub fn hash_password() -> anyhow::Result<ExitCode> {
    let secret = read_password()?;
    password::check_length(&secret, 1)?;
    println!("{}", password::hash(&secret)?);
    Ok(ExitCode::SUCCESS)
}

/// One line from stdin; on a terminal, prompted and not echoed.
fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("password: ").context("cannot read the password");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
