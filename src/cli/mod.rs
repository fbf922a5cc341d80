//! Command-line interface (README, "Commands"): argument definitions and dispatch.
//!
//! Each command lives in its own file and uses the library exactly as the
//! gateway does, so what `check` and `explain` say is what `run` does.

mod check;
mod explain;
mod keygen;
mod revoke;
mod run;
mod token;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "authgate",
    version,
    about = "A reverse proxy that authenticates every request before the backend sees it"
)]
pub struct Args {
    /// Config file
    #[arg(long, short, global = true, env = "AUTHGATE_CONFIG", default_value = "gateway.toml")]
    pub config: PathBuf,
    /// Log format (filters come from RUST_LOG, e.g. `info,authgate=debug`)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default)
    Run,
    /// Validate the config and print the listeners and the route table
    Check {
        /// Also connect to the store and read the denylist
        #[arg(long)]
        online: bool,
    },
    /// Write a new private key (mode 0600) or HMAC secret and print the public JWK
    Keygen(keygen::KeygenArgs),
    /// Read a password from stdin (not echoed on a terminal) and print its argon2id PHC string
    HashPassword,
    /// Mint an access token with the configured signing key
    Token(token::TokenArgs),
    /// Dry run: which route matches, which rule allows or denies, and why
    Explain(explain::ExplainArgs),
    /// Revoke one token (--jti) or every token of a subject issued so far (--sub), in the configured store
    Revoke(revoke::RevokeArgs),
    /// Manage users in the configured store
    #[command(subcommand)]
    User(user::UserCommand),
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command.unwrap_or(Command::Run) {
        Command::Run => run::run(&args.config),
        Command::Check { online } => check::check(&args.config, online),
        Command::Keygen(k) => keygen::keygen(&k),
        Command::HashPassword => user::hash_password(),
        Command::Token(t) => token::token(&args.config, &t),
        Command::Explain(e) => explain::explain(&args.config, &e),
        Command::Revoke(r) => revoke::revoke(&args.config, &r),
        Command::User(u) => user::user(&args.config, &u),
    }
}

pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(authgate::logs::Stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// Loads and fully builds the state, as `run` would; `CheckOnly` creates nothing on disk.
fn load_state(path: &std::path::Path, mode: authgate::auth::keys::LoadMode) -> anyhow::Result<authgate::State> {
    Ok(authgate::state::load(path, mode).map_err(ConfigFailure)?)
}

/// Config problems, printed one `FILE:LINE:COL: message` per line.
#[derive(Debug)]
struct ConfigFailure(authgate::config::ConfigErrors);

impl std::fmt::Display for ConfigFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.0.len();
        writeln!(f, "invalid configuration ({n} problem{}):", if n == 1 { "" } else { "s" })?;
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for ConfigFailure {}

/// Runs a store command on a small runtime of its own.
fn with_store<T>(
    config_path: &std::path::Path,
    f: impl AsyncFnOnce(&authgate::config::Config, &dyn authgate::store::Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use anyhow::Context;
    let config = authgate::config::load(config_path).map_err(ConfigFailure)?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        let store = authgate::store::open(&config.store).await.context("cannot open the store")?;
        f(&config, &*store).await
    })
}
