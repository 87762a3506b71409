//! Reads the user service's Ed25519 PKCS#8 PEM signing key on standard input and prints the
//! JWKS document of its public key, for the Secret that the gateway and the other services read
//! (`PILLIVERY_JWKS`; docs/deploy.md). The private key is only read, never printed.
#![forbid(unsafe_code)]

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut pem = String::new();
    if let Err(error) = std::io::stdin().read_to_string(&mut pem) {
        eprintln!("pillivery-jwks: reading the key: {error}");
        return ExitCode::FAILURE;
    }
    match pillivery_platform::auth::SigningKey::from_pkcs8_pem(&pem, None) {
        Ok(key) => {
            println!(
                "{}",
                pillivery_platform::auth::jwks(&[key.verification_key()])
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("pillivery-jwks: not an Ed25519 PKCS#8 PEM key: {error}");
            ExitCode::from(64)
        }
    }
}
