//! Generated code for Emporium's gRPC contracts. Nothing here is written by hand except the module
//! tree: edit the `.proto` files under `proto/` instead.
#![allow(unreachable_pub, clippy::all, clippy::pedantic)]

/// Encoded `FileDescriptorSet` of every contract (imports included), with source info (comments)
/// and custom options (the `google.api` annotations, `emporium.api.v1.access`): for server
/// reflection, the chassis's access table and the contract lint. Read the options through
/// `prost_reflect::DescriptorPool`: `prost_types` drops extensions.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/emporium_descriptor.bin"));

/// An event type the contract declares (`(emporium.api.v1.events)`) with the message `M` that is
/// its `data`. The only way to get one is a constant generated from the contract
/// (`catalog::v1::events::PRODUCT_CREATED`), so code cannot emit an undeclared event or one with
/// another message than declared.
pub struct EventType<M> {
    name: &'static str,
    data: std::marker::PhantomData<fn() -> M>,
}

impl<M> EventType<M> {
    /// Only generated code calls this, with a declared type.
    #[doc(hidden)]
    pub const fn new(name: &'static str) -> EventType<M> {
        EventType {
            name,
            data: std::marker::PhantomData,
        }
    }

    /// The CloudEvents `type`, e.g. `emporium.catalog.product.created`.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<M> Clone for EventType<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for EventType<M> {}

impl<M> std::fmt::Debug for EventType<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

pub mod api {
    pub mod v1 {
        tonic::include_proto!("emporium.api.v1");
    }
}

pub mod audit {
    pub mod v1 {
        tonic::include_proto!("emporium.audit.v1");
    }
}

pub mod catalog {
    pub mod v1 {
        tonic::include_proto!("emporium.catalog.v1");

        /// The events this package's messages declare, one typed constant each.
        pub mod events {
            include!(concat!(env!("OUT_DIR"), "/emporium.catalog.v1.events.rs"));
        }
    }
}

pub mod identity {
    pub mod v1 {
        tonic::include_proto!("emporium.identity.v1");

        /// The events this package's messages declare, one typed constant each.
        pub mod events {
            include!(concat!(env!("OUT_DIR"), "/emporium.identity.v1.events.rs"));
        }

        // Hand-written so that the password never reaches a log through `{:?}`.
        impl std::fmt::Debug for CreateAccountRequest {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("CreateAccountRequest")
                    .field("email", &self.email)
                    .field("first_name", &self.first_name)
                    .field("last_name", &self.last_name)
                    .field("nickname", &self.nickname)
                    .field("country", &self.country)
                    .field("password", &"[REDACTED]")
                    .field("customer_id", &self.customer_id)
                    .finish()
            }
        }

        impl std::fmt::Debug for SetPasswordRequest {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("SetPasswordRequest")
                    .field("id", &self.id)
                    .field("expected_version", &self.expected_version)
                    .field("password", &"[REDACTED]")
                    .finish()
            }
        }

        impl std::fmt::Debug for CreateClientResponse {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("CreateClientResponse")
                    .field("client", &self.client)
                    .field("client_secret", &redacted(&self.client_secret))
                    .finish()
            }
        }

        impl std::fmt::Debug for ResetClientSecretResponse {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("ResetClientSecretResponse")
                    .field("client", &self.client)
                    .field("client_secret", &redacted(&self.client_secret))
                    .finish()
            }
        }

        /// What Debug shows for a secret: whether there is one, never what it is.
        fn redacted(secret: &str) -> &'static str {
            if secret.is_empty() { "" } else { "[REDACTED]" }
        }
    }
}
