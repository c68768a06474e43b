//! Emporium's contract conventions, read from a compiled descriptor set (with its custom options
//! and comments, e.g. `emporium_proto::FILE_DESCRIPTOR_SET`): [`access`] says who may call each
//! RPC, as its `(emporium.api.v1.access)` option declares, for the chassis to enforce; [`lint`]
//! checks a contract keeps to the conventions (standard methods and fields, a behaviour on every
//! field, references to existing resource types, declared access, comments), one rule per check;
//! [`resources`] is the resource model (each resource, its service and methods, its fields'
//! behaviours) that surfaces generic over the contract, such as the CLI, are built from; and
//! with the `grpc` feature, [`grpc`] calls any of its methods with dynamic messages; with the
//! `fixtures` feature, [`fixtures`] compiles a fixture contract at test time.

pub mod access;
pub mod docs;
pub mod events;
#[cfg(feature = "fixtures")]
pub mod fixtures;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod lint;
pub mod resources;

pub use access::{Access, AccessProblem, MethodAccess, method_access};
pub use lint::{Finding, lint};

/// Decodes an encoded `FileDescriptorSet` into a pool that keeps every custom option.
pub fn decode_pool(
    file_descriptor_set: &[u8],
) -> Result<prost_reflect::DescriptorPool, prost_reflect::DescriptorError> {
    prost_reflect::DescriptorPool::decode(file_descriptor_set)
}
