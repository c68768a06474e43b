//! Contracts compiled at test time, as `crates/proto` compiles the real ones (with protox,
//! comments and imports included, every option kept): fixture services and resources the suite
//! does not have, for the tests that show a surface is generic over the contract.

use std::path::Path;

use prost_reflect::DescriptorPool;

/// Compiles `file` (its path under `fixtures`: `emporium/suppliers/v1/suppliers.proto`), its
/// imports found under `fixtures` and `proto` (the repository's `proto/`, for the shared
/// annotations).
pub fn compile(
    fixtures: &Path,
    proto: &Path,
    file: &str,
) -> Result<DescriptorPool, Box<dyn std::error::Error + Send + Sync>> {
    let mut compiler = protox::Compiler::new([fixtures, proto])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files([file])?;
    Ok(crate::decode_pool(
        compiler.encode_file_descriptor_set().as_slice(),
    )?)
}
