//! Generated code for Emporium's gRPC contracts. Nothing here is written by hand except the module
//! tree: edit the `.proto` files under `proto/` instead.
#![allow(unreachable_pub, clippy::all, clippy::pedantic)]

/// Encoded `FileDescriptorSet` of every contract (imports included), for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/emporium_descriptor.bin"));

pub mod audit {
    pub mod v1 {
        tonic::include_proto!("emporium.audit.v1");
    }
}

pub mod catalog {
    pub mod v1 {
        tonic::include_proto!("emporium.catalog.v1");
    }
}
