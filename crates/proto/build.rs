//! Compiles every contract under `proto/` with protox (pure Rust, no `protoc`), generates the
//! tonic/prost code, and writes the encoded descriptor set that the gateway and gRPC reflection read.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Relative to this package (cargo runs build scripts there): the `rerun-if-changed` paths
    // below are then resolved per checkout. Absolute paths would let a second checkout sharing
    // the target directory reuse this one's generated code after its own protos changed.
    let proto_root = PathBuf::from("../../proto");
    // Every contract of ours plus the vendored google.api/google.rpc files (the error details).
    let files = proto_files(&proto_root)?;
    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;
    // Encoded by the compiler itself: it keeps custom options (google.api.http and ours) that a
    // round trip through prost_types::FileDescriptorSet would drop as unknown fields.
    let encoded = compiler.encode_file_descriptor_set();
    let descriptors = prost_types::FileDescriptorSet::decode(encoded.as_slice())?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("pillivery_descriptor.bin"), &encoded)?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;

    println!("cargo:rerun-if-changed={}", proto_root.display());
    Ok(())
}

/// Every `.proto` file below `dir`, sorted so the build is reproducible.
fn proto_files(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(next)? {
            let path = entry?.path();
            if path.is_dir() {
                println!("cargo:rerun-if-changed={}", path.display());
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "proto") {
                println!("cargo:rerun-if-changed={}", path.display());
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}
