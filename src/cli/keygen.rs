//! `authgate keygen`: a new private key or HMAC secret, written 0600.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use authgate::auth::keys::{generate, public_jwk, write_private_file};
use authgate::config::Algorithm;

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// ES256, ES384, RS256, PS256, EdDSA or HS256
    #[arg(long)]
    alg: String,
    /// Where to write the key (refuses to overwrite)
    #[arg(long)]
    out: PathBuf,
    /// The kid put in the printed JWK (default: the file name without extension)
    #[arg(long)]
    kid: Option<String>,
}

pub fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let alg: Algorithm = match args.alg.parse() {
        Ok(a) => a,
        Err(_) => bail!("unknown algorithm `{}`: use ES256, ES384, RS256, PS256, EdDSA or HS256", args.alg),
    };
    let material = generate(alg).map_err(anyhow::Error::msg)?;
    let kid = args
        .kid
        .clone()
        .unwrap_or_else(|| args.out.file_stem().map_or_else(|| "key".to_owned(), |s| s.to_string_lossy().into_owned()));
    let jwk = public_jwk(alg, &kid, &material).map_err(anyhow::Error::msg)?;
    write_private_file(&args.out, material.as_bytes())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    match jwk {
        Some(jwk) => println!("{}", serde_json::to_string_pretty(&jwk)?),
        None => eprintln!("wrote a 256-bit secret to {}; an HMAC key has no public JWK", args.out.display()),
    }
    Ok(ExitCode::SUCCESS)
}
