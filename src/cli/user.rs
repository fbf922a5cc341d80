//! `authgate user add NAME [--roles a,b]` (password from stdin), `user disable NAME`,
//! `user import FILE` (users with the hashes they have), and `hash-password`.

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
    /// Import users with the password hashes they have (a JSON array, or JSON
    /// lines, of {"username", "password_hash", "roles"?, "disabled"?}): argon2,
    /// bcrypt, Werkzeug scrypt/pbkdf2, passlib pbkdf2-sha256. Nothing is
    /// imported if any entry is malformed, unless --skip-invalid
    Import {
        file: std::path::PathBuf,
        /// Import the valid entries and report the others
        #[arg(long)]
        skip_invalid: bool,
    },
}

/// One entry of an import file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Imported {
    username: String,
    password_hash: String,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    disabled: bool,
}

/// The entries of an import file with the line each starts on; the
/// problems, each with its line, for those that are not users.
fn parse_import(text: &str) -> (Vec<(usize, Imported)>, Vec<String>) {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let mut raw: Vec<(usize, Result<Imported, String>)> = Vec::new();
    if text.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<&serde_json::value::RawValue>>(text) {
            Ok(items) => {
                for item in items {
                    // The item's text is a slice of `text`: its offset gives the line.
                    let offset = (item.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
                    raw.push((line_of(offset), serde_json::from_str(item.get()).map_err(|e| e.to_string())));
                }
            }
            Err(e) => return (Vec::new(), vec![format!("line {}: not a JSON array of users: {e}", e.line())]),
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if !line.trim().is_empty() {
                raw.push((i + 1, serde_json::from_str(line).map_err(|e| e.to_string())));
            }
        }
    }
    let (mut users, mut problems) = (Vec::new(), Vec::new());
    for (line, entry) in raw {
        let checked = entry.and_then(|u| {
            if u.username.is_empty() || u.username.len() > 256 || u.username.chars().any(char::is_control) {
                return Err("a user name is 1 to 256 characters, without control characters".to_owned());
            }
            if password::HashFormat::of(&u.password_hash).is_none() {
                return Err("password_hash is not argon2, bcrypt ($2a$/$2b$/$2y$), Werkzeug scrypt/pbkdf2:sha256, or passlib $pbkdf2-sha256$".to_owned());
            }
            if u.roles.iter().flatten().any(|r| r.is_empty() || r.contains(',') || r.trim() != r) {
                return Err("a role must be non-empty, without commas or surrounding spaces".to_owned());
            }
            Ok(u)
        });
        match checked {
            Ok(u) => users.push((line, u)),
            Err(e) => problems.push(format!("line {line}: {e}")),
        }
    }
    (users, problems)
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
        UserCommand::Import { file, skip_invalid } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let (users, problems) = parse_import(&text);
            for p in &problems {
                eprintln!("{}:{p}", file.display());
            }
            if !problems.is_empty() && !skip_invalid {
                bail!(
                    "{} malformed entr{}: nothing imported (--skip-invalid imports the rest)",
                    problems.len(),
                    if problems.len() == 1 { "y" } else { "ies" }
                );
            }
            super::with_store(config_path, async |config, store| {
                let mut imported = 0;
                for (line, u) in &users {
                    let user = User {
                        name: u.username.clone(),
                        password_hash: u.password_hash.clone(),
                        roles: u.roles.clone().unwrap_or_else(|| config.login.default_roles.clone()),
                        disabled: u.disabled,
                    };
                    if store.create_user(&user).await.context("the store refused a user")? {
                        imported += 1;
                    } else {
                        eprintln!(
                            "{}:line {line}: user `{}` already exists: kept as it was",
                            file.display(),
                            u.username
                        );
                    }
                }
                eprintln!("imported {imported} of {} users ({} store)", users.len() + problems.len(), store.backend());
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

#[cfg(test)]
mod tests {
    use super::parse_import;

    #[test]
    fn import_files_report_each_bad_entry_with_its_line() {
        let lines = "{\"username\":\"a\",\"password_hash\":\"$2b$12$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzabcde\"}\n\n{\"username\":\"b\",\"password_hash\":\"md5$x$y\"}\nnot json\n";
        let (users, problems) = parse_import(lines);
        assert_eq!(users.len(), 1);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("line 3: password_hash is not"), "{problems:?}");
        assert!(problems[1].starts_with("line 4:"), "{problems:?}");
        let array = "[\n  {\"username\":\"a\",\"password_hash\":\"pbkdf2:sha256:600000$salt$00ff\",\"roles\":[\"x\"]},\n  {\"username\":\"\",\"password_hash\":\"pbkdf2:sha256:1$s$00\"}\n]";
        let (users, problems) = parse_import(array);
        assert_eq!((users.len(), users[0].0), (1, 2));
        assert_eq!(problems, vec!["line 3: a user name is 1 to 256 characters, without control characters".to_owned()]);
    }
}
