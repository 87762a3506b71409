//! Writes the fleet's protobuf descriptor set (every service's contract with its
//! `google.api.http` bindings) to the file named by the only argument, for Envoy's gRPC-JSON
//! transcoder (k8s/envoy/transcoder.yaml, docs/deploy.md).
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut arguments = std::env::args().skip(1);
    let (Some(path), None) = (arguments.next(), arguments.next()) else {
        eprintln!("usage: pillivery-descriptor-set OUT.pb");
        return ExitCode::from(64);
    };
    match std::fs::write(&path, pillivery_proto::FILE_DESCRIPTOR_SET) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pillivery-descriptor-set: {path}: {error}");
            ExitCode::FAILURE
        }
    }
}
